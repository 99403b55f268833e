//! Hostile and mistaken input against a real replica: each gets a clear error, and the
//! replica keeps serving everyone else.

mod common;

use common::Cluster;
use concoord::net::frame;
use concoord::net::wire::{ClientFrame, Hello, Role, Welcome};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads until the replica closes the connection; true when it did.
fn closed_by_replica(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

async fn still_serves(cluster: &Cluster) {
    let c = cluster.client().await;
    c.call("counter", "increment", vec![]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connections_are_closed_and_the_replica_keeps_serving() {
    let cluster = Cluster::start(1).await;
    let addr = cluster.replicas[0].addr();

    // Garbage bytes instead of a hello.
    let mut s = connect(&addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_replica(s), "garbage should close the connection");
    still_serves(&cluster).await;

    // A length prefix larger than the maximum frame.
    let mut s = connect(&addr);
    s.write_all(&(frame::MAX_FRAME_BYTES as u32 + 1).to_be_bytes())
        .unwrap();
    assert!(
        closed_by_replica(s),
        "an oversized frame should close the connection"
    );
    still_serves(&cluster).await;

    // A truncated frame, then the client goes away.
    let mut s = connect(&addr);
    s.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    drop(s);
    still_serves(&cluster).await;

    // A well-formed frame that is not a hello.
    let mut s = connect(&addr);
    s.write_all(&framed(&[0xc1, 0xc1])).unwrap();
    assert!(closed_by_replica(s));

    // A hello from another protocol version is refused with a reason.
    let mut s = connect(&addr);
    let mut hello = Hello::new(Role::Client);
    hello.version = 999;
    s.write_all(&framed(&frame::encode(&hello).unwrap()))
        .unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let welcome: Welcome = frame::decode(&body).unwrap();
    assert!(
        matches!(&welcome, Welcome::Refused { reason } if reason.contains("version")),
        "{welcome:?}"
    );

    // A client that sends garbage after a good hello.
    let mut s = connect(&addr);
    s.write_all(&framed(&frame::encode(&Hello::new(Role::Client)).unwrap()))
        .unwrap();
    s.write_all(&framed(b"\x93\x01\x02")).unwrap();
    assert!(closed_by_replica(s));

    // Good frames on another connection are unaffected all along.
    let mut s = connect(&addr);
    s.write_all(&framed(&frame::encode(&Hello::new(Role::Client)).unwrap()))
        .unwrap();
    s.write_all(&framed(&frame::encode(&ClientFrame::Status).unwrap()))
        .unwrap();
    for _ in 0..2 {
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
    }
    still_serves(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error() {
    let cluster = Cluster::start(1).await;
    let out = Command::new(common::BIN)
        .args(["replica", "-a", "127.0.0.1", "-p"])
        .arg(cluster.replicas[0].port.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    still_serves(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_that_does_not_answer_is_a_clear_error() {
    let ports = common::free_ports(2);
    let out = Command::new(common::BIN)
        .args(["replica", "-a", "127.0.0.1", "-p"])
        .arg(ports[0].to_string())
        .args([
            "-b",
            &format!("127.0.0.1:{}", ports[1]),
            "--join-timeout-ms",
            "2000",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot join through"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_default_object_type_is_refused() {
    let port = common::free_ports(1)[0];
    let out = Command::new(common::BIN)
        .args([
            "replica",
            "-o",
            "concoord.object.nosuch.NoSuch",
            "-a",
            "127.0.0.1",
            "-p",
        ])
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NoSuch"), "{err}");
}
