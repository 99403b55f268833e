//! A moto server (PyPI `moto[server]`, every AWS service on one port) started on
//! 127.0.0.1 by a test and stopped when dropped, the environment that points a child
//! process at it, and the bits of HTTP/1.1 the tests' fault-injecting proxies and fake
//! metadata service speak. Shared by the Route53 and EC2 tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// One HTTP/1.1 request read off a connection: its head (request line and headers, with the
/// blank line) and its body, whole by Content-Length.
pub struct HttpRequest {
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// `METHOD /path HTTP/1.1`.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The header's value, if present (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads the next request from `conn`; `buf` carries bytes already read past the previous
/// one (keep-alive). None when the peer closes before a whole head arrives.
pub async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<HttpRequest>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !read_more(conn, buf).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        if !read_more(conn, buf).await? {
            break;
        }
    }
    let end = buf.len().min(head_end + length);
    let body = buf[head_end..end].to_vec();
    buf.drain(..end);
    Ok(Some(HttpRequest { head, body }))
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    let n = conn.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Answers with `status` ("400 Bad Request") and a body; `extra` holds whole header lines.
pub async fn answer(
    conn: &mut TcpStream,
    status: &str,
    extra: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reply = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await
}

/// Sends `request` on to `upstream` with `Connection: close` (so its answer ends at EOF),
/// copies the answer back and closes `conn`.
pub async fn forward(
    mut conn: TcpStream,
    upstream: SocketAddr,
    request: &HttpRequest,
) -> std::io::Result<()> {
    let mut head = String::new();
    for line in request.head.trim_end_matches("\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(head.as_bytes()).await?;
    up.write_all(&request.body).await?;
    let mut reply = Vec::new();
    up.read_to_end(&mut reply).await?;
    conn.write_all(&reply).await?;
    conn.shutdown().await
}
