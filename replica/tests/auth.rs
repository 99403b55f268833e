//! Client authentication and roles (issue 14): real replica processes with `--auth-file`,
//! clients proving themselves with tokens or client certificates made by `concoord certs`,
//! each role's allowed and refused operations, a wrong token, replicas linking with and
//! without credentials, an auth file re-read on SIGHUP, and tokens kept out of the logs.

mod common;

use common::{TIMING_FLAGS, free_ports};
use concoord::auth::Token;
use concoord::client::{
    Client, ClientError, ClientOptions, Credentials, fetch_status_with, remove_member_over,
};
use concoord::command::{Operation, Value};
use concoord::net::secure::ClientTls;
use concoord::net::wire::Fault;
use concoord::net::wire::ReplyResult;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_concoord");
const ADMIN: &str = "admin-token-5c1b0e7d9a2f4468";
const APP: &str = "app-token-0d4e8f2a6b9c1357";
const READER: &str = "reader-token-7e3a9c5b1d2f4680";

/// Replica processes, killed on drop; their logs go to files so a test can read them.
struct Group {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl Drop for Group {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Group {
    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn addrs(&self) -> String {
        (0..self.ports.len())
            .map(|i| self.addr(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("replica-{i}.log"))
    }

    fn logs(&self) -> String {
        (0..self.ports.len())
            .map(|i| std::fs::read_to_string(self.log(i)).unwrap_or_default())
            .collect()
    }

    /// Starts replica `i` with `extra` flags (the first founds, the others join it), its
    /// log at debug level in its file.
    fn spawn(&mut self, i: usize, extra: &[String]) {
        let log = std::fs::File::create(self.log(i)).unwrap_or_else(|e| panic!("log: {e}"));
        let mut cmd = Command::new(BIN);
        cmd.args(["replica", "-o", "counter", "-a", "127.0.0.1", "-p"])
            .arg(self.ports[i].to_string())
            .args(TIMING_FLAGS)
            .args(["--join-timeout-ms", "5000"])
            .args(extra)
            .env("RUST_LOG", "debug")
            .env_remove("CONCOORD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if i > 0 {
            cmd.arg("-b").arg(self.addr(0));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start concoord replica: {e}"));
        self.children[i] = Some(child);
    }

    fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().map_or(0, Child::id)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn options(creds: Credentials) -> ClientOptions {
    ClientOptions {
        tls: creds.tls,
        token: creds.token,
        call_timeout: Some(Duration::from_secs(10)),
        failover_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

fn token(t: &str) -> Credentials {
    Credentials {
        tls: None,
        token: Some(Token::new(t)),
    }
}

/// Waits until some replica leads a view of `members`, asking with `creds`.
async fn wait_for_view(group: &Group, members: usize, creds: &Credentials) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for i in 0..group.ports.len() {
            if let Ok(s) =
                fetch_status_with(&group.addr(i), Duration::from_millis(500), creds.clone()).await
                && s.is_leader
                && s.view.members.len() == members
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader of {members} members within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a fault-injection frame as the holder of `secret`; the replica's answer.
type RawReader = concoord::net::frame::FrameReader<tokio::net::tcp::OwnedReadHalf>;
type RawWriter = concoord::net::frame::FrameWriter<tokio::net::tcp::OwnedWriteHalf>;

/// A raw client connection to `addr` that showed `secret` in its hello; the replica's
/// refusal as the error.
async fn connect_as(addr: &str, secret: &str) -> Result<(RawReader, RawWriter), String> {
    use concoord::net::frame;
    use concoord::net::wire::{Hello, Role, Welcome};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (frame::reader(r), frame::writer(w));
    let hello = Hello::with_token(Role::Client, Some(Token::new(secret)));
    frame::write_frame(&mut w, &hello)
        .await
        .map_err(|e| e.to_string())?;
    match frame::read_frame(&mut r).await.map_err(|e| e.to_string())? {
        Welcome::Accepted { .. } => Ok((r, w)),
        Welcome::Refused { reason } => Err(reason),
    }
}

async fn inject_as(addr: &str, secret: &str, fault: Fault) -> Result<Vec<u64>, String> {
    use concoord::net::frame;
    use concoord::net::wire::{ClientFrame, ReplicaFrame};
    let (mut r, mut w) = connect_as(addr, secret).await?;
    frame::write_frame(&mut w, &ClientFrame::Fault(fault))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if let ReplicaFrame::Faults(result) =
            frame::read_frame(&mut r).await.map_err(|e| e.to_string())?
        {
            return result;
        }
    }
}

fn addrs_of(group: &Group) -> Vec<String> {
    (0..3).map(|i| group.addr(i)).collect()
}

/// Sends one command in `session` as the holder of `secret`, to whichever replica leads.
async fn request_as(
    addrs: &[String],
    secret: &str,
    session: u64,
    op: Operation,
) -> Result<ReplyResult, String> {
    use concoord::command::ClientCommand;
    use concoord::net::frame;
    use concoord::net::wire::{ClientFrame, ReplicaFrame};
    for addr in addrs {
        let (mut r, mut w) = connect_as(addr, secret).await?;
        let cmd = ClientCommand {
            session,
            seq: 1_000_000,
            ack: 1_000_000,
            op: op.clone(),
            // Ignored: the replica stamps who the connection proved to be.
            owner: Some("token:app".into()),
        };
        frame::write_frame(&mut w, &ClientFrame::Request(cmd))
            .await
            .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match frame::read_frame::<_, ReplicaFrame>(&mut r).await {
                    Ok(ReplicaFrame::Reply { result, .. }) => return Ok(result),
                    Ok(ReplicaFrame::NotLeader { .. }) => return Err("not leader".to_string()),
                    Ok(_) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| "no reply".to_string())?;
        match reply {
            Ok(ReplyResult::NotLeader { .. }) => continue,
            Ok(result) => return Ok(result),
            Err(e) if e == "not leader" => continue,
            Err(e) => return Err(e),
        }
    }
    Err("no replica leads".into())
}

fn assert_permission_error<T: std::fmt::Debug>(result: Result<T, ClientError>, needle: &str) {
    match result {
        Err(ClientError::Remote { kind, message }) if kind == "PermissionError" => {
            assert!(message.contains(needle), "{message}")
        }
        other => panic!("expected PermissionError ({needle}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_give_roles_and_each_role_is_held_to_its_own() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let auth = dir.path().join("auth");
    write(
        &auth,
        &format!(
            "# the group's identities\n\
             token operator admin {ADMIN}\n\
             token app client sha256:{}\n\
             token dashboard readonly {READER}\n",
            sha256_hex(APP)
        ),
    );
    let mut group = Group {
        dir,
        ports: free_ports(4),
        children: vec![None, None, None, None],
    };
    let flags: Vec<String> = [
        "--auth-file",
        &auth.display().to_string(),
        "--token",
        ADMIN,
        "--allow-fault-injection",
    ]
    .map(String::from)
    .to_vec();
    let admin = token(ADMIN);
    for i in 0..3 {
        group.spawn(i, &flags);
        wait_for_view(&group, i + 1, &admin).await;
    }
    let addrs = group.addrs();

    // No token, or a wrong one: refused at once with the reason, not after a failover.
    let started = Instant::now();
    assert_permission_error(
        Client::connect(&addrs, options(Credentials::default())).await,
        "requires authentication",
    );
    assert_permission_error(
        Client::connect(&addrs, options(token("not-a-token-of-this-group"))).await,
        "not valid",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals took {:?}",
        started.elapsed()
    );

    // admin: objects, and the rest below.
    let operator = Client::connect(&addrs, options(admin.clone()))
        .await
        .unwrap_or_else(|e| panic!("admin connects: {e}"));
    operator
        .create("hits", "Counter", vec![])
        .await
        .unwrap_or_else(|e| panic!("admin creates: {e}"));

    // client: calls any method, but neither creates nor deletes objects.
    let app = Client::connect(&addrs, options(token(APP)))
        .await
        .unwrap_or_else(|e| panic!("client connects: {e}"));
    app.call("hits", "increment", vec![])
        .await
        .unwrap_or_else(|e| panic!("client increments: {e}"));
    assert_permission_error(
        app.create("mine", "Counter", vec![]).await,
        "needs role 'admin'",
    );
    assert_permission_error(app.delete("hits").await, "needs role 'admin'");
    assert_permission_error(
        remove_member_over(&addrs, &group.addr(2), Duration::from_secs(5), token(APP)).await,
        "a membership change needs role 'admin'",
    );

    // readonly: read methods, listings and status; no write.
    let reader = Client::connect(&addrs, options(token(READER)))
        .await
        .unwrap_or_else(|e| panic!("readonly connects: {e}"));
    assert_eq!(
        reader.call("hits", "getvalue", vec![]).await.ok(),
        Some(Value::from(1))
    );
    assert_permission_error(
        reader.call("hits", "increment", vec![]).await,
        "calling hits.increment needs role 'client'",
    );
    assert!(reader.list().await.is_ok(), "readonly lists the objects");
    assert!(
        fetch_status_with(&group.addr(0), Duration::from_secs(2), token(READER))
            .await
            .is_ok(),
        "readonly reads the status"
    );

    // A session belongs to who opened it: the readonly client can neither end the app's
    // session (which would release what it holds) nor call in it.
    let app_session = app.session_id();
    for op in [Operation::CloseSession, Operation::List] {
        let refused = request_as(&addrs_of(&group), READER, app_session, op).await;
        assert!(
            matches!(&refused, Ok(ReplyResult::Err { kind, message })
                if kind == "PermissionError" && message.contains("another identity")),
            "{refused:?}"
        );
    }
    app.call("hits", "getvalue", vec![])
        .await
        .unwrap_or_else(|e| panic!("the app's session survived: {e}"));
    // Resetting an object is the admin's, as creating it is.
    assert_permission_error(
        app.call("hits", "__concoordinit__", vec![]).await,
        "needs role 'admin'",
    );

    // Refused requests changed nothing.
    assert_eq!(
        operator.call("hits", "getvalue", vec![]).await.ok(),
        Some(Value::from(1))
    );
    let objects = operator
        .list()
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert!(!format!("{objects:?}").contains("mine"), "{objects:?}");

    // Fault injection is the admin's.
    let refused = inject_as(&group.addr(0), APP, Fault::RestoreAll).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("PermissionError") && e.contains("'admin'")),
        "{refused:?}"
    );
    assert_eq!(
        inject_as(&group.addr(0), ADMIN, Fault::RestoreAll).await,
        Ok(vec![])
    );

    // A replica without the admin token cannot join; with it, it can.
    group.spawn(3, &["--auth-file".into(), auth.display().to_string()]);
    let joined = tokio::task::spawn_blocking({
        let mut child = group.children[3].take();
        move || child.as_mut().map(|c| c.wait())
    })
    .await
    .unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(
        joined.is_some_and(|status| status.is_ok_and(|s| !s.success())),
        "a joiner without a token gives up"
    );
    let founder_log = std::fs::read_to_string(group.log(0)).unwrap_or_default();
    assert!(
        founder_log.contains("a replica must present an admin token"),
        "the refusal is logged"
    );
    group.spawn(3, &flags);
    wait_for_view(&group, 4, &admin).await;

    // The file is re-read on SIGHUP: the app's token stops working, for its open
    // connection too, and the readonly token becomes a client's.
    write(
        &auth,
        &format!("token operator admin {ADMIN}\ntoken dashboard client {READER}\n"),
    );
    for i in 0..4 {
        let _ = Command::new("kill")
            .args(["-HUP", &group.pid(i).to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match app.call("hits", "increment", vec![]).await {
            // Refused on its connection, or the connection closed and the next hello
            // refused: either way, said as a PermissionError.
            Err(ClientError::Remote { kind, message }) if kind == "PermissionError" => {
                assert!(
                    message.contains("no longer") || message.contains("not valid"),
                    "{message}"
                );
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "the removed token still works: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_permission_error(
        Client::connect(&addrs, options(token(APP))).await,
        "not valid",
    );
    let promoted = Client::connect(&addrs, options(token(READER)))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    promoted
        .call("hits", "increment", vec![])
        .await
        .unwrap_or_else(|e| panic!("a client now: {e}"));

    // No token ever reaches a log line, even at debug level.
    let logs = group.logs();
    assert!(logs.contains("refused"), "the logs were captured");
    for secret in [ADMIN, APP, READER] {
        assert!(!logs.contains(secret), "a token is in the logs");
    }
    for c in [&operator, &app, &reader, &promoted] {
        let _ = c.close().await;
    }
}

/// Runs `concoord certs ...`; panics with its output when it fails.
fn certs(args: &[&str]) {
    let out = Command::new(BIN)
        .arg("certs")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("concoord certs: {e}"));
    assert!(
        out.status.success(),
        "concoord certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_users_and_cannot_link_as_replicas() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let pki = dir.path().join("pki");
    let pki_s = pki.display().to_string();
    certs(&["init", &pki_s]);
    let ports = free_ports(2);
    for (i, port) in ports.iter().enumerate() {
        certs(&[
            "issue",
            &pki_s,
            &format!("replica-{i}"),
            "--host",
            "127.0.0.1",
        ]);
        let _ = port;
    }
    for user in ["monitoring", "ops", "stranger", "intruder"] {
        certs(&["issue", &pki_s, user, "--client"]);
    }
    let auth = dir.path().join("auth");
    write(
        &auth,
        "certificate monitoring readonly\ncertificate ops admin\n",
    );
    let mut group = Group {
        dir,
        ports,
        children: vec![None, None],
    };
    let tls_flags = |cert: &str| -> Vec<String> {
        vec![
            "--tls-cert".into(),
            pki.join(format!("{cert}.crt")).display().to_string(),
            "--tls-key".into(),
            pki.join(format!("{cert}.key")).display().to_string(),
            "--tls-ca".into(),
            pki.join("ca.crt").display().to_string(),
            "--auth-file".into(),
            auth.display().to_string(),
        ]
    };
    group.spawn(0, &tls_flags("replica-0"));
    let user = |name: &str| Credentials {
        tls: Some(
            ClientTls::load(
                &pki.join("ca.crt"),
                Some(&pki.join(format!("{name}.crt"))),
                Some(&pki.join(format!("{name}.key"))),
            )
            .unwrap_or_else(|e| panic!("client TLS: {e}")),
        ),
        token: None,
    };
    wait_for_view(&group, 1, &user("ops")).await;
    let addrs = group.addrs();

    let ops = Client::connect(&addrs, options(user("ops")))
        .await
        .unwrap_or_else(|e| panic!("ops connects: {e}"));
    ops.create("jobs", "Counter", vec![])
        .await
        .unwrap_or_else(|e| panic!("ops (admin) creates: {e}"));
    let monitoring = Client::connect(&addrs, options(user("monitoring")))
        .await
        .unwrap_or_else(|e| panic!("monitoring connects: {e}"));
    assert_eq!(
        monitoring.call("jobs", "getvalue", vec![]).await.ok(),
        Some(Value::from(0))
    );
    assert_permission_error(
        monitoring.call("jobs", "increment", vec![]).await,
        "certificate 'monitoring' has role 'readonly'",
    );
    // A certificate from the CA whose name has no role, and no certificate at all.
    assert_permission_error(
        Client::connect(&addrs, options(user("stranger"))).await,
        "certificate 'stranger' has no role",
    );
    let ca_only = Credentials {
        tls: Some(
            ClientTls::load(&pki.join("ca.crt"), None, None)
                .unwrap_or_else(|e| panic!("client TLS: {e}")),
        ),
        token: None,
    };
    assert_permission_error(
        Client::connect(&addrs, options(ca_only)).await,
        "requires authentication",
    );

    // A replica showing a client's certificate (signed by the right CA) cannot join.
    group.spawn(1, &tls_flags("intruder"));
    let exited = tokio::task::spawn_blocking({
        let mut child = group.children[1].take();
        move || child.as_mut().map(|c| c.wait())
    })
    .await
    .unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(
        exited.is_some_and(|status| status.is_ok_and(|s| !s.success())),
        "a replica with a client's certificate gives up joining"
    );
    let founder_log = std::fs::read_to_string(group.log(0)).unwrap_or_default();
    assert!(
        founder_log.contains("certificate 'intruder' is a client's"),
        "the founder says why"
    );
    // With a replica's certificate it joins.
    group.spawn(1, &tls_flags("replica-1"));
    wait_for_view(&group, 2, &user("ops")).await;
    let _ = ops.close().await;
    let _ = monitoring.close().await;
}
