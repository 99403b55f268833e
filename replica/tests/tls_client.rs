//! The `concoord` binary makes HTTPS calls (EC2, Route53) without a crypto-provider panic:
//! `concoord ec2 list` against a local HTTPS endpoint with a CA of the test's own, answering
//! as EC2 does for a cluster without instances. Before one provider was installed explicitly,
//! a build with both of rustls's providers panicked on the first TLS connection.

mod tls_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tls_support::{TestTls, test_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const BIN: &str = env!("CARGO_BIN_EXE_concoord");

/// EC2's answer to DescribeInstances when nothing matches.
const NO_INSTANCES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>tls-test</requestId><reservationSet/></DescribeInstancesResponse>";

/// Reads one HTTP/1.1 request (headers, then Content-Length bytes of body).
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(text);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_list_over_https_to_an_endpoint_with_its_own_ca() {
    let TestTls { ca_pem, config } = test_tls("concoord-tls-test-ca");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let ca_file = dir.path().join("ca.pem");
    std::fs::File::create(&ca_file)
        .and_then(|mut f| f.write_all(ca_pem.as_bytes()))
        .unwrap_or_else(|e| panic!("write the CA: {e}"));

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address: {e}"))
        .port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let Some(request) = read_request(&mut tls).await else {
                continue;
            };
            if request.contains("Action=DescribeInstances") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{NO_INSTANCES}",
                NO_INSTANCES.len()
            );
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });

    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["ec2", "list", "--cluster", "tls"])
            .env("AWS_ENDPOINT_URL", format!("https://localhost:{port}"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SSL_CERT_FILE", &ca_file)
            .env("HOME", dir.path())
            .env("CONCOORD_CONFIG_DIR", dir.path())
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("join: {e}"))
    .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "concoord panicked:\n{stderr}");
    assert!(
        out.status.success(),
        "ec2 list over HTTPS failed: {stdout}{stderr}"
    );
    assert!(stdout.contains("has no instances"), "{stdout}");
    assert!(
        requests.load(Ordering::SeqCst) >= 1,
        "no DescribeInstances reached the HTTPS endpoint"
    );
}
