//! Helpers for the nameserver tests: replicas serving DNS on their own loopback addresses
//! (127.0.0.11, .12, ...) so every replica has a distinct A record, and DNS questions asked
//! three ways: hickory-resolver, raw hickory-proto messages (to see codes and flags), and
//! `dig` when it is installed.

#![allow(dead_code)]

use concoord::net::wire::StatusReport;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_concoord");
pub const DOMAIN: &str = "counterdomain.com";

const TIMING: [&str; 6] = [
    "--heartbeat-ms",
    "30",
    "--election-ms",
    "300",
    "--session-lease-ms",
    "2000",
];

/// A port free for both TCP and UDP on `ip` a moment ago.
pub fn free_port(ip: &str) -> u16 {
    loop {
        let Ok(tcp) = TcpListener::bind((ip, 0)) else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else {
            continue;
        };
        if UdpSocket::bind((ip, addr.port())).is_ok() {
            return addr.port();
        }
    }
}

pub struct DnsReplica {
    pub ip: String,
    pub port: u16,
    pub dns_port: u16,
    pub child: Option<Child>,
}

impl DnsReplica {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn dns(&self) -> SocketAddr {
        SocketAddr::new(self.ip.parse().unwrap(), self.dns_port)
    }
}

pub struct DnsCluster {
    pub replicas: Vec<DnsReplica>,
}

/// Starts `concoord replica` on `ip`, serving DNS; `extra` goes last.
pub fn spawn(
    ip: &str,
    port: u16,
    dns_port: u16,
    boot: Option<&str>,
    extra: &[&str],
    envs: &[(&str, String)],
) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["replica", "-o", "counter", "-a", ip, "-p"])
        .arg(port.to_string())
        .args(["-n", DOMAIN, "--dns-port"])
        .arg(dns_port.to_string())
        .args(TIMING)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if std::env::var_os("CONCOORD_TEST_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    if let Some(b) = boot {
        cmd.args(["-b", b]);
    }
    cmd.spawn().expect("start concoord replica")
}

impl DnsCluster {
    /// `n` replicas on 127.0.0.11.., the first founding, each waiting for the previous.
    pub async fn start(n: usize) -> DnsCluster {
        let mut c = DnsCluster {
            replicas: Vec::new(),
        };
        for _ in 0..n {
            c.add(&[], &[]).await;
        }
        c
    }

    /// Starts one more replica (joining through the first) and waits until it is a member.
    pub async fn add(&mut self, extra: &[&str], envs: &[(&str, String)]) -> usize {
        let i = self.replicas.len();
        let ip = format!("127.0.0.{}", 11 + i);
        let port = free_port(&ip);
        let dns_port = free_port(&ip);
        let boot = self.replicas.first().map(DnsReplica::addr);
        let child = spawn(&ip, port, dns_port, boot.as_deref(), extra, envs);
        self.replicas.push(DnsReplica {
            ip,
            port,
            dns_port,
            child: Some(child),
        });
        self.wait_for_members(self.live().len()).await;
        i
    }

    pub fn live(&self) -> Vec<&DnsReplica> {
        self.replicas.iter().filter(|r| r.child.is_some()).collect()
    }

    pub fn addrs(&self) -> String {
        self.live()
            .iter()
            .map(|r| r.addr())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub async fn status(&self, i: usize) -> Option<StatusReport> {
        concoord::client::fetch_status(&self.replicas[i].addr(), Duration::from_millis(500))
            .await
            .ok()
    }

    /// Waits until a leader reports a view of `n` members; returns its report.
    pub async fn wait_for_members(&self, n: usize) -> StatusReport {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.replicas.len() {
                if self.replicas[i].child.is_none() {
                    continue;
                }
                if let Some(s) = self.status(i).await
                    && s.is_leader
                    && s.view.members.len() == n
                {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader of a {n}-member view in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.replicas[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DnsCluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill(i);
        }
    }
}

/// One question, sent as a raw message over UDP or TCP; the decoded answer.
pub async fn ask(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    class: DNSClass,
    tcp: bool,
    edns: Option<u16>,
) -> Message {
    let mut q = Query::query(Name::from_ascii(name).unwrap(), rtype);
    q.set_query_class(class);
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.add_query(q);
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    let bytes = m.to_vec().unwrap();
    let reply = if tcp {
        exchange_tcp(server, &bytes).await
    } else {
        exchange_udp(server, &bytes).await
    };
    let reply = reply.unwrap_or_else(|| panic!("no answer from {server} to {name} {rtype}"));
    let got = Message::from_vec(&reply).expect("a well-formed answer");
    assert_eq!(got.metadata.id, m.metadata.id);
    got
}

/// Sends raw bytes over UDP; the reply, if one comes within a second.
pub async fn exchange_udp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    sock.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Sends one length-prefixed message over a new TCP connection; the reply, if any.
pub async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(server).await.ok()?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.ok()?;
    let work = async {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .ok()?
}

/// A resolver that asks only `server` (UDP, then TCP on truncation), caching nothing.
pub fn resolver(server: SocketAddr) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let mut b = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], vec![ns]),
        TokioRuntimeProvider::default(),
    );
    b.options_mut().cache_size = 0;
    b.options_mut().timeout = Duration::from_secs(1);
    b.build().unwrap()
}

/// `dig +short` (or other dig flags) against `server`; None when dig is not installed.
pub fn dig(server: SocketAddr, args: &[&str]) -> Option<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+norec",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output();
    match out {
        Ok(o) => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Err(_) => {
            eprintln!(
                "NOTICE: dig is not installed (Debian: bind9-dnsutils); skipping the dig checks"
            );
            None
        }
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
