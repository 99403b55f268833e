//! A moto server (PyPI `moto[server]`, every AWS service on one port) started on
//! 127.0.0.1 by a test and stopped when dropped, and the environment that points a child
//! process at it. Shared by the Route53 and EC2 tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where `.ci/test` installs moto; `CONCOORD_MOTO_SERVER` names another `moto_server`.
fn moto_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONCOORD_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/concoord-moto/venv/bin/moto_server");
    p.exists().then_some(p)
}

pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Moto {
    /// Starts moto on a free port; None (with a notice) when moto is not installed, unless
    /// running in CI, where that is a failure.
    pub async fn start() -> Option<Moto> {
        let Some(bin) = moto_path() else {
            let msg = "moto_server not found (run .ci/test, which installs moto[server] into \
                       ~/.cache/concoord-moto/venv, or set CONCOORD_MOTO_SERVER)";
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("NOTICE: {msg}; skipping");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "moto did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Moto { addr, child })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for a child process that must reach only `endpoint`.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}
