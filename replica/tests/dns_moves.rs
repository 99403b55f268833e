//! A member that comes back at a new IP is published there at once, and a member that is
//! gone is published at no address: what a pod restart does to a replica in Kubernetes
//! (stable name, new pod IP announced with `--advertise-ip`), with real processes.
//!
//! Every replica is `-a localhost` on its own port (a stable name, as a pod's), and
//! announces a loopback IP of its own with `--advertise-ip`; replica 1 serves the domain.

mod dns_support;

use dns_support::{BIN, DOMAIN, ask, eventually, free_port};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn replica(port: u16, dns_port: u16, ip: &str, boot: Option<u16>, data: &Path) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["replica", "-o", "counter", "-a", "localhost", "-p"])
        .arg(port.to_string())
        .args([
            "--advertise-ip",
            ip,
            "-n",
            DOMAIN,
            "--dns-addr",
            "127.0.0.1",
        ])
        .arg("--dns-port")
        .arg(dns_port.to_string())
        .args([
            "--heartbeat-ms",
            "30",
            "--election-ms",
            "300",
            "-w",
            "--data-dir",
        ])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if std::env::var_os("CONCOORD_TEST_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    if let Some(b) = boot {
        cmd.args(["-b", &format!("localhost:{b}")]);
    }
    Proc(Some(
        cmd.spawn().unwrap_or_else(|e| panic!("start {BIN}: {e}")),
    ))
}

/// The A records of `name` that `server` gives now.
async fn a_records(server: SocketAddr, name: &str) -> Vec<IpAddr> {
    let m = ask(server, name, RecordType::A, DNSClass::IN, false, None).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

async fn members(port: u16) -> usize {
    concoord::client::fetch_status(&format!("localhost:{port}"), Duration::from_millis(500))
        .await
        .map(|s| if s.is_leader { s.view.members.len() } else { 0 })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_at_a_new_ip_is_published_there_at_once_and_nowhere_while_down() {
    let dirs = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let ports: Vec<u16> = (0..3).map(|_| free_port("127.0.0.1")).collect();
    let dns = free_port("127.0.0.1");
    let server = SocketAddr::from(([127, 0, 0, 1], dns));
    let data = |i: usize| dirs.path().join(format!("r{}", i + 1));
    let _r1 = replica(ports[0], dns, "127.0.0.41", None, &data(0));
    eventually(Duration::from_secs(20), "replica 1 leads", || async {
        members(ports[0]).await == 1
    })
    .await;
    // One at a time, so ids follow: r2 is replica 2.
    let mut r2 = replica(
        ports[1],
        free_port("127.0.0.1"),
        "127.0.0.42",
        Some(ports[0]),
        &data(1),
    );
    eventually(Duration::from_secs(30), "a view of 2", || async {
        members(ports[0]).await == 2
    })
    .await;
    let _r3 = replica(
        ports[2],
        free_port("127.0.0.1"),
        "127.0.0.43",
        Some(ports[0]),
        &data(2),
    );
    eventually(Duration::from_secs(30), "a view of 3", || async {
        members(ports[0]).await == 3
    })
    .await;
    let r2_name = format!("r2.{DOMAIN}.");
    let announced: IpAddr = [127, 0, 0, 42].into();
    eventually(
        Duration::from_secs(10),
        "r2 published at the IP it announced",
        || async { a_records(server, &r2_name).await == vec![announced] },
    )
    .await;

    // Down: its old IP belongs to nobody, so it is not handed out.
    r2.kill();
    let gone = eventually(
        Duration::from_secs(10),
        "r2 without an address while down",
        || async { a_records(server, &r2_name).await.is_empty() },
    )
    .await;
    println!("r2's address withdrawn {gone:?} after it died");

    // Back with its disk at a new IP: published there as soon as it links to replica 1.
    let moved: IpAddr = [127, 0, 0, 52].into();
    let restarted = Instant::now();
    let _r2 = replica(
        ports[1],
        free_port("127.0.0.1"),
        "127.0.0.52",
        Some(ports[0]),
        &data(1),
    );
    let back = eventually(
        Duration::from_secs(10),
        "r2 published at its new IP",
        || async {
            let now = a_records(server, &r2_name).await;
            assert!(
                !now.contains(&announced),
                "the old IP {announced} came back: {now:?}"
            );
            now == vec![moved]
        },
    )
    .await;
    println!(
        "r2's new IP published {back:?} after the restart ({:?} since the process started)",
        restarted.elapsed()
    );
    // Well inside the host-name cache's 30 s: the announcement, not a lookup, did it.
    assert!(back < Duration::from_secs(5), "took {back:?}");
    // And the SRV answer carries it in its additional section too.
    let srv = ask(
        server,
        &format!("_concoord._tcp.{DOMAIN}."),
        RecordType::SRV,
        DNSClass::IN,
        false,
        Some(1232),
    )
    .await;
    let extra: Vec<IpAddr> = srv
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    assert!(extra.contains(&moved), "SRV additionals {extra:?}");
    assert!(!extra.contains(&announced), "SRV additionals {extra:?}");
}
