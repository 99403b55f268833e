//! The operator binary starts against an HTTPS Kubernetes API and stays up.
//!
//! Every other operator test mocks the API in-process, which is how a start-up panic
//! (rustls finding two crypto providers on its first TLS connection) went unseen until a
//! real cluster. Here the real binary talks TLS to a local API server of the test's own
//! (support/fake_apiserver.rs) through a kubeconfig, as it does in a pod.
//!
//! Which binary: `CONCOORD_OPERATOR_BIN` when set (CI points it at the static `dist`
//! binary that goes into the image, whose features can differ from a workspace test
//! build), else the binary cargo built for this test.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::fake_apiserver::FakeApiServer;

fn operator_binary() -> PathBuf {
    match std::env::var_os("CONCOORD_OPERATOR_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_concoord-operator")),
    }
}

/// A port nothing listened on a moment ago (for a check-health that must fail).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address: {e}"))
}

/// The operator process; killed on drop, its output kept in a file for failure messages.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(kubeconfig: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> Operator {
        let log = dir.join("operator.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("log file clone: {e}"));
        let child = Command::new(operator_binary())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", operator_binary().display()));
        Operator { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the operator serves /readyz: it is started on port 0 (a port picked by the
    /// test could be taken by another socket before the operator binds it) and logs the
    /// address it got.
    async fn metrics_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.assert_running("before it served metrics");
            let found = self.output().lines().find_map(|line| {
                let (_, rest) = line.split_once("/readyz on ")?;
                rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "the operator did not say where it serves /readyz within 30 s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Panics with the operator's output when it has exited.
    fn assert_running(&mut self, when: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the operator exited {when} ({status}); its output:\n{}",
                self.output()
            );
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the operator did not stop within 20 s of SIGTERM; its output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HTTP status of GET `path` on `addr`, or None when nothing answers.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn check_health(url: &str) -> Output {
    Command::new(operator_binary())
        .args(["check-health", "--url", url, "--timeout-secs", "5"])
        .output()
        .unwrap_or_else(|e| panic!("run check-health: {e}"))
}

/// Starts the operator with `args` against a fresh fake API server and checks start-up:
/// /readyz answers 200, the watches of the controller are open, the process stays up, the
/// helm test hook's `check-health` passes, and SIGTERM stops it cleanly.
async fn starts_and_stays_up(extra: &[&str]) -> FakeApiServer {
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let mut args = vec!["run", "--metrics-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut operator = Operator::start(&kubeconfig, dir.path(), &args);
    let metrics = operator.metrics_addr().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        operator.assert_running("before /readyz answered 200");
        if http_status(metrics, "/readyz").await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer 200 within 60 s; the operator's output:\n{}",
            operator.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The controller is running: it listed the clusters and watches them and what they own.
    let wanted = [
        "concoordclusters",
        "statefulsets",
        "services",
        "configmaps",
        "poddisruptionbudgets",
        "serviceaccounts",
        "pods",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        operator.assert_running("while starting its watches");
        let seen = api.seen();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|plural| {
                !seen
                    .iter()
                    .any(|s| s.is_watch() && s.path.ends_with(&format!("/{plural}")))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no watch of {missing:?} within 30 s; requests seen: {:#?}\noutput:\n{}",
            seen.iter()
                .map(|s| format!("{} {}?{}", s.method, s.path, s.query))
                .collect::<Vec<_>>(),
            operator.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = api.seen();
    assert!(
        seen.iter().all(|s| s.authorized),
        "a request without the kubeconfig's token: {seen:#?}"
    );

    // Still up a while later, still ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    operator.assert_running("after it was ready");
    assert_eq!(http_status(metrics, "/healthz").await, Some(200));
    assert_eq!(http_status(metrics, "/readyz").await, Some(200));

    // The helm test hook: check-health against /readyz passes...
    let ok = check_health(&format!("http://{metrics}/readyz"));
    assert!(
        ok.status.success(),
        "check-health of a ready operator failed: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // ...and fails with one clear line where nothing answers.
    let nobody = free_port();
    let bad = check_health(&format!("http://{nobody}/readyz"));
    assert!(
        !bad.status.success(),
        "check-health of a closed port passed"
    );
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains(&nobody.to_string()) && said.trim().lines().count() == 1,
        "check-health's error should be one line naming the URL: {said:?}"
    );
    assert!(!said.contains("panicked"), "check-health panicked: {said}");

    let status = operator.terminate();
    assert!(
        status.success(),
        "the operator did not exit 0 on SIGTERM ({status}); output:\n{}",
        operator.output()
    );
    let output = operator.output();
    assert!(
        !output.contains("panicked"),
        "the operator panicked:\n{output}"
    );
    // Its log is a file here, as in a pod: plain text, no terminal colours.
    assert!(
        !output.contains('\u{1b}'),
        "colour codes in a log that is not a terminal:\n{output}"
    );
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_starts_against_an_https_api_server() {
    starts_and_stays_up(&[]).await;
}

/// As the chart runs it: with leader election, the Lease is created through the API first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_with_leader_election_takes_the_lease_and_starts() {
    let api = starts_and_stays_up(&["--leader-elect", "--leader-election-namespace", "ops"]).await;
    let leases: Vec<String> = api
        .objects()
        .into_keys()
        .filter(|k| k.contains("/leases/"))
        .collect();
    assert_eq!(
        leases,
        vec!["/apis/coordination.k8s.io/v1/namespaces/ops/leases/concoord-operator".to_string()],
        "the operator should have created its Lease"
    );
}

/// A kubeconfig whose CA does not match: one clear error, no panic, exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_with_an_untrusted_server_fails_with_a_clear_error() {
    let api = FakeApiServer::start().await;
    let other = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let kubeconfig = dir.path().join("kubeconfig");
    // The other server's CA, this server's address.
    other.write_kubeconfig(&kubeconfig);
    let text = std::fs::read_to_string(&kubeconfig).unwrap_or_default();
    std::fs::write(
        &kubeconfig,
        text.replace(&other.addr.to_string(), &api.addr.to_string()),
    )
    .unwrap_or_else(|e| panic!("rewrite kubeconfig: {e}"));
    let mut operator = Operator::start(
        &kubeconfig,
        dir.path(),
        &["run", "--metrics-addr", "127.0.0.1:0"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = operator.child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the operator kept running against an untrusted API server; output:\n{}",
            operator.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = operator.output();
    assert!(!status.success(), "exit 0 against an untrusted server");
    assert!(
        !output.contains("panicked"),
        "the operator panicked:\n{output}"
    );
    // It names the real cause (the certificate), not a missing CRD.
    assert!(
        output.contains("cannot reach the Kubernetes API") && !output.contains("CRD installed"),
        "the error should say what failed: {output}"
    );
    assert!(
        output.to_lowercase().contains("certificate"),
        "the error should name the certificate problem: {output}"
    );
}
