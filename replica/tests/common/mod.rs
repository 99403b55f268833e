//! A cluster of real `concoord replica` processes on loopback, for integration tests.
//! Every process is killed when the cluster is dropped, even when a test fails.

#![allow(dead_code)]

use concoord::client::{Client, ClientOptions};
use concoord::net::wire::StatusReport;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_concoord");

/// Fast failure detection and short leases, so tests run in seconds.
pub const TIMING_FLAGS: [&str; 6] = [
    "--heartbeat-ms",
    "30",
    "--election-ms",
    "300",
    "--session-lease-ms",
    "2000",
];

/// Ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub struct Replica {
    pub port: u16,
    pub child: Option<Child>,
}

impl Replica {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub struct Cluster {
    pub replicas: Vec<Replica>,
}

pub fn spawn_replica(port: u16, bootstrap: Option<String>, extra: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["replica", "-o", "counter", "-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(TIMING_FLAGS)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if std::env::var_os("CONCOORD_TEST_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    if let Some(b) = bootstrap {
        cmd.arg("-b").arg(b);
    }
    cmd.spawn().expect("start concoord replica")
}

impl Cluster {
    /// Starts `n` replicas: the first founds the group, the others join through it, one
    /// after the other (each waits until the previous one is in the view).
    pub async fn start(n: usize) -> Cluster {
        let ports = free_ports(n);
        let mut cluster = Cluster {
            replicas: Vec::new(),
        };
        for (i, &port) in ports.iter().enumerate() {
            let bootstrap = (i > 0).then(|| format!("127.0.0.1:{}", ports[0]));
            let child = spawn_replica(port, bootstrap, &[]);
            cluster.replicas.push(Replica {
                port,
                child: Some(child),
            });
            cluster.wait_for_view(i + 1).await;
        }
        cluster
    }

    pub fn addrs(&self) -> String {
        self.replicas
            .iter()
            .map(Replica::addr)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.addrs(), ClientOptions::default())
            .await
            .expect("connect a client")
    }

    pub async fn status_of(&self, i: usize) -> Option<StatusReport> {
        concoord::client::fetch_status(&self.replicas[i].addr(), Duration::from_millis(500))
            .await
            .ok()
    }

    /// Waits until some replica leads a view of `members` members.
    pub async fn wait_for_view(&self, members: usize) -> StatusReport {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.replicas.len() {
                if self.replicas[i].child.is_none() {
                    continue;
                }
                if let Some(s) = self.status_of(i).await
                    && s.is_leader
                    && s.view.members.len() == members
                {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader of a {members}-member view within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Index of the current leader among the running replicas.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.replicas.len() {
                if self.replicas[i].child.is_some()
                    && let Some(s) = self.status_of(i).await
                    && s.is_leader
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill(i);
        }
    }
}

/// ToyFramework's profiler API for real processes: cut or restore a replica's links. The
/// replica must run with `--allow-fault-injection`.
pub async fn inject(addr: &str, fault: concoord::net::wire::Fault) -> Result<Vec<u64>, String> {
    use concoord::net::frame;
    use concoord::net::wire::{ClientFrame, Hello, ReplicaFrame, Role, Welcome};
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (r, w) = stream.into_split();
        let (mut r, mut w) = (frame::reader(r), frame::writer(w));
        frame::write_frame(&mut w, &Hello::new(Role::Client))
            .await
            .map_err(|e| e.to_string())?;
        let _: Welcome = frame::read_frame(&mut r).await.map_err(|e| e.to_string())?;
        frame::write_frame(&mut w, &ClientFrame::Fault(fault))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match frame::read_frame(&mut r).await.map_err(|e| e.to_string())? {
                ReplicaFrame::Faults(result) => return result,
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .unwrap_or_else(|_| Err("no answer".into()))
}
