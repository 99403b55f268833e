//! `concoord workload` (what the docker suite runs inside its network) against replica
//! processes on 127.0.0.1, and a replica stopping on SIGTERM (as `docker stop` asks).

mod common;

use common::{BIN, Cluster, free_ports, spawn_replica};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with a deadline; (exit success, stdout, stderr).
fn concoord(args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start concoord");
    let started = Instant::now();
    while child.try_wait().expect("poll concoord").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("concoord {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect concoord output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_prints_counts_that_match_the_counter() {
    let cluster = Cluster::start(3).await;
    let addrs = cluster.addrs();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        concoord(
            &[
                "workload",
                &addrs,
                "--clients",
                "3",
                "--duration",
                "1s",
                "--read-every",
                "3",
            ],
            Duration::from_secs(60),
        )
    })
    .await
    .expect("workload thread");
    assert!(ok, "workload failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(summary["linearizable"], true, "{summary}");
    assert_eq!(summary["violation"], serde_json::Value::Null, "{summary}");
    assert_eq!(summary["clients"], 3);
    let acked = summary["acknowledged"].as_i64().expect("acknowledged");
    let start = summary["start_value"].as_i64().expect("start_value");
    let end = summary["final_value"].as_i64().expect("final_value");
    assert!(acked > 0, "{summary}");
    assert!(summary["reads"].as_i64().expect("reads") > 0, "{summary}");
    // Nothing failed, so every increment was acknowledged and is counted exactly once.
    assert_eq!(summary["unknown"], 0, "{summary}");
    assert_eq!(end - start, acked, "{summary}");
    let client = cluster.client().await;
    let now = client
        .counter("counter")
        .getvalue()
        .await
        .expect("getvalue");
    assert_eq!(now, end);
}

#[test]
fn a_replica_exits_promptly_on_sigterm() {
    let port = free_ports(1)[0];
    let mut child = spawn_replica(port, None, &[]);
    // Wait until it listens, so the signal reaches a running replica.
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "replica never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll replica") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("the replica ignored SIGTERM for 5s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}
