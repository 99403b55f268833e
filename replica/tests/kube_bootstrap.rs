//! The bootstrap rule the Kubernetes operator relies on, with real processes on loopback
//! (127.0.0.1, .2, .3 play pods 0, 1, 2 on one port): every replica gets the same `-b`;
//! the one `--found-if` names founds, the others join; a restart with its disk recovers
//! even while found-if still names it; a wiped pod rejoins once found-if is cleared; and
//! `concoord probe ready|live` answers as the kubelet needs.

mod common;

use common::{BIN, TIMING_FLAGS, free_ports};
use concoord::client::fetch_status;
use concoord::net::wire::StatusReport;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A replica process, killed on drop.
struct Pod(Child);

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pod(ip: &str, port: u16, boot: &str, found_if: &str, data: &Path, extra: &[&str]) -> Pod {
    let child = Command::new(BIN)
        .args([
            "replica",
            "-a",
            ip,
            "-p",
            &port.to_string(),
            "-b",
            boot,
            "-w",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(TIMING_FLAGS)
        .args(extra)
        .env("CONCOORD_FOUND_IF", found_if)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Only a process expected to exit soon may log into a pipe nobody drains meanwhile.
        .stderr(if extra.contains(&"--join-timeout-ms") {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("start concoord replica");
    Pod(child)
}

fn probe(kind: &str, addr: &str) -> Output {
    Command::new(BIN)
        .args(["probe", kind, "--addr", addr, "--timeout", "1s"])
        .output()
        .expect("run concoord probe")
}

/// Waits until `concoord probe ready` passes for `addr`.
fn wait_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = probe("ready", addr);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} not ready within 30 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn status(addr: &str) -> StatusReport {
    fetch_status(addr, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("status of {addr}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn found_if_founds_once_and_everyone_else_joins() {
    let port = free_ports(1)[0];
    let dir = std::env::temp_dir().join(format!("concoord-kube-bootstrap-{}", std::process::id()));
    let _cleanup = TempDir(dir.clone());
    let data = |i: usize| dir.join(format!("pod-{i}"));
    let addr = |i: usize| format!("127.0.0.{}:{port}", i + 1);
    // Pod 0's own address is its -b, as the headless Service would list it.
    let boot = format!("127.0.0.1:{port}");

    // Before bootstrap, found-if names pod 0: it founds; pods 1 and 2 join.
    let mut pods = vec![pod("127.0.0.1", port, &boot, "127.0.0.1", &data(0), &[])];
    wait_ready(&addr(0));
    for i in 1..3 {
        let ip = format!("127.0.0.{}", i + 1);
        pods.push(pod(&ip, port, &boot, "127.0.0.1", &data(i), &[]));
        wait_ready(&addr(i));
    }
    let founded = status(&addr(2)).await;
    assert_eq!(founded.view.members.len(), 3, "{founded:?}");
    let group = founded.view.group;
    assert!(probe("live", &addr(1)).status.success());

    // Pod 0 restarts with its disk while found-if still names it: it recovers, same group.
    drop(pods.remove(0));
    pods.insert(0, pod("127.0.0.1", port, &boot, "127.0.0.1", &data(0), &[]));
    wait_ready(&addr(0));
    assert_eq!(status(&addr(0)).await.view.group, group);

    // The operator cleared found-if; pod 0 comes back without its disk and must rejoin
    // the same group (through the others) instead of founding a second one.
    drop(pods.remove(0));
    std::fs::remove_dir_all(data(0)).expect("wipe pod 0's data");
    let boot_others = format!("127.0.0.2:{port}");
    pods.insert(0, pod("127.0.0.1", port, &boot_others, "", &data(0), &[]));
    wait_ready(&addr(0));
    let rejoined = status(&addr(0)).await;
    assert_eq!(rejoined.view.group, group);
    assert_eq!(rejoined.view.members.len(), 3, "{rejoined:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joiner_that_only_finds_itself_gives_up_and_probes_fail() {
    let port = free_ports(1)[0];
    let dir = std::env::temp_dir().join(format!("concoord-kube-alone-{}", std::process::id()));
    let _cleanup = TempDir(dir.clone());
    let me = format!("127.0.0.1:{port}");
    // No found-if match: it must not found, and joining through itself cannot work.
    let mut alone = pod(
        "127.0.0.1",
        port,
        &me,
        "other-0",
        &dir,
        &["--join-timeout-ms", "1500"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = alone.0.try_wait().expect("poll replica") {
            break status;
        }
        assert!(Instant::now() < deadline, "the lone joiner did not give up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!exit.success());
    let mut stderr = String::new();
    if let Some(mut pipe) = alone.0.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("no replica but this one"), "{stderr}");
    // Nothing listens now: both probes fail with one line saying so.
    let out = probe("live", &me);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not live"));
    assert!(!probe("ready", &me).status.success());
}

/// Removes a temporary directory when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopped_with_sigterm_hands_over_and_exits_cleanly() {
    let ports = free_ports(3);
    let dir = std::env::temp_dir().join(format!("concoord-kube-term-{}", std::process::id()));
    let _cleanup = TempDir(dir.clone());
    std::fs::create_dir_all(&dir).expect("temp dir");
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut pods = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("{i}.log"))).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args(["replica", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(TIMING_FLAGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if i > 0 {
            cmd.args(["-b", &addr(0)]);
        }
        pods.push(Pod(cmd.spawn().expect("start replica")));
        wait_ready(&addr(i));
    }
    // Ids follow the join order: the founder is 1, the next ones 2 and 3.
    let led_by = status(&addr(0)).await.leader.expect("a leader");
    let leader = (0..3)
        .find(|&i| u64::try_from(i + 1).ok() == Some(led_by))
        .expect("the leader is one of ours");
    let pid = pods[leader].0.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = pods[leader].0.try_wait().expect("poll replica") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Handled, not killed by the signal: a clean exit after handing over.
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let log = std::fs::read_to_string(dir.join(format!("{leader}.log"))).unwrap_or_default();
    assert!(log.contains("handed leadership to replica"), "{log}");
    // The others go on under the successor.
    let other = (0..3).find(|&i| i != leader).expect("another replica");
    wait_ready(&addr(other));
}
