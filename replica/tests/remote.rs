//! `concoord remote` against a real OpenSSH server on loopback (see remote_support): login
//! checks and the reason each one fails, setup copying the binary into a temp install dir,
//! a replica and a nameserver started through ssh and then used by a client and by dig,
//! stop, and Route53 credentials written on the host with mode 0600.

mod remote_support;

use concoord::client::{Client, ClientOptions, fetch_status};
use remote_support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TIMING: [&str; 6] = [
    "--heartbeat-ms",
    "30",
    "--election-ms",
    "300",
    "--session-lease-ms",
    "2000",
];

#[test]
fn login_checks_say_why_they_fail() {
    let s = SshServer::start();
    let host = s.host();
    let key = s.path("client_key");
    let key = key.to_str().unwrap();

    // Missing key file: refused before anything is stored.
    let e = s.fails(&["remote", "addsshkey", "/nonexistent/concoord.pem"]);
    assert!(
        e.contains("/nonexistent/concoord.pem") && e.contains("no such file"),
        "{e}"
    );
    assert!(!s.config_dir().join("remote.toml").exists());

    // Happy path: key, user, node; the login is checked and the host key remembered.
    let out = s.ok(&["remote", "addsshkey", key]);
    assert!(out.contains(key), "{out}");
    let out = s.ok(&["remote", "addusername", &s.user]);
    assert!(out.contains(&s.user), "{out}");
    let out = s.ok(&["remote", "addnode", &host]);
    assert!(
        out.contains(&format!("Logged in to {host} as {}", s.user)),
        "{out}"
    );
    assert!(out.contains("Adding node to the configuration"), "{out}");
    let known = std::fs::read_to_string(s.config_dir().join("known_hosts")).unwrap();
    assert!(
        known.contains(&format!("[127.0.0.1]:{}", s.port)),
        "{known}"
    );
    let cfg = s.ok(&["remote", "config"]);
    let file = s.config_dir().join("remote.toml");
    assert!(
        cfg.contains(&format!("Configuration: {}", file.display())),
        "{cfg}"
    );
    assert!(cfg.contains(key) && cfg.contains(&host), "{cfg}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("[[node]]") && text.contains(&format!("host = \"{host}\"")),
        "{text}"
    );

    // Wrong key: authentication refused, and the node is not added.
    s.ok(&["remote", "addsshkey", s.path("wrong_key").to_str().unwrap()]);
    let other = format!("localhost:{}", s.port);
    let e = s.fails(&["remote", "addnode", &other]);
    assert!(e.contains("authentication refused"), "{e}");
    assert!(e.contains("was not added"), "{e}");
    assert!(!s.ok(&["remote", "config"]).contains(&other));

    // Closed port: unreachable.
    s.ok(&["remote", "addsshkey", key]);
    let closed = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let e = s.fails(&["remote", "addnode", &closed]);
    assert!(e.contains("unreachable: connection refused"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // --no-check adds a host that is down now, without logging in.
    let out = s.ok(&["remote", "addnode", "--no-check", &closed]);
    assert!(!out.contains("Logged in") && out.contains(&closed), "{out}");
    assert!(s.ok(&["remote", "config"]).contains(&closed));

    // The configured key file disappeared.
    let gone = s.path("gone_key");
    std::fs::copy(s.path("client_key"), &gone).unwrap();
    s.ok(&["remote", "addsshkey", gone.to_str().unwrap()]);
    std::fs::remove_file(&gone).unwrap();
    let e = s.fails(&["remote", "addnode", &host]);
    assert!(e.contains("gone_key") && e.contains("no such file"), "{e}");

    // The host's key changed since it was remembered.
    s.ok(&["remote", "addsshkey", key]);
    let other_host_key = std::fs::read_to_string(s.path("wrong_key.pub")).unwrap();
    let fields: Vec<&str> = other_host_key.split_whitespace().take(2).collect();
    std::fs::write(
        s.config_dir().join("known_hosts"),
        format!("[127.0.0.1]:{} {}\n", s.port, fields.join(" ")),
    )
    .unwrap();
    let e = s.fails(&["remote", "addnode", &host]);
    assert!(e.contains("HOST KEY CHANGED"), "{e}");
    assert!(e.contains(&format!("-R '[127.0.0.1]:{}'", s.port)), "{e}");

    // Commands on a host that was never added say so.
    let e = s.fails(&["remote", "setup", "127.0.0.2:22"]);
    assert!(e.contains("not a configured node"), "{e}");
}

async fn wait_for_members(addr: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = fetch_status(addr, Duration::from_millis(500)).await
            && s.view.members.len() == n
            && s.leader.is_some()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: no {n}-member view within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dig(port: u16, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+norec",
                "+time=2",
                "+tries=1",
                "+short",
            ])
            .args(args),
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_over_ssh_serve_clients_and_dns_until_stopped() {
    let s = SshServer::start();
    // Spaces and quotes in the install dir: every remote path goes through shell quoting.
    let install = s.path("remote home/it's \"concoord\"");
    let _started = StartedGuard {
        install_dir: install.clone(),
    };
    s.configure();
    s.ok(&["remote", "installdir", install.to_str().unwrap()]);
    let host = s.host();

    let begun = Instant::now();
    let out = s.ok(&["remote", "setup", &host]);
    eprintln!("setup took {:?}", begun.elapsed());
    assert!(
        out.contains(&format!("({} {})", "concoord", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let copied = install.join("concoord");
    let meta = std::fs::metadata(&copied).unwrap();
    assert_eq!(meta.len(), std::fs::metadata(bin()).unwrap().len());
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);

    let (p0, p1, dns) = (free_port(), free_port(), free_dns_port());
    let (a0, a1) = (format!("127.0.0.1:{p0}"), format!("127.0.0.1:{p1}"));
    let mut flags = vec![
        "remote",
        "replica",
        &host,
        "-o",
        "counter",
        "-a",
        "127.0.0.1",
    ];
    let p0s = p0.to_string();
    flags.extend(["-p", &p0s]);
    flags.extend(TIMING);
    // A data dir whose name needs quoting arrives with its exact name.
    flags.extend(["--data-dir", "data of 'r0' \"$HOME\""]);
    let out = s.ok(&flags);
    assert!(
        out.contains(&format!("Started replica on {host}: PID ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("concoord remote stop {host} --port {p0}")),
        "{out}"
    );
    assert!(out.contains(&format!("replica-{p0}.log")), "{out}");
    wait_for_members(&a0, 1).await;
    assert!(install.join("data of 'r0' \"$HOME\"").is_dir());

    let p1s = p1.to_string();
    let dnss = dns.to_string();
    let mut flags = vec![
        "remote",
        "nameserver",
        &host,
        "-o",
        "counter",
        "-a",
        "127.0.0.1",
    ];
    flags.extend([
        "-p",
        &p1s,
        "-b",
        &a0,
        "-n",
        "counterdomain.com",
        "--dns-port",
        &dnss,
    ]);
    flags.extend(TIMING);
    let out = s.ok(&flags);
    assert!(
        out.contains(&format!("Started nameserver on {host}: PID ")),
        "{out}"
    );
    wait_for_members(&a0, 2).await;

    // The client library and the status command reach both.
    let client = Client::connect(&format!("{a0}, {a1}"), ClientOptions::default())
        .await
        .unwrap();
    for _ in 0..3 {
        client.call("counter", "increment", vec![]).await.unwrap();
    }
    let v = client.call("counter", "getvalue", vec![]).await.unwrap();
    assert_eq!(v.as_i64(), Some(3), "{v:?}");
    let status = s.ok(&["status", &a1]);
    assert!(status.contains(&a0) && status.contains(&a1), "{status}");

    // The nameserver answers for the group.
    let a = dig(dns, &["counterdomain.com", "A"]);
    assert_eq!(a.trim(), "127.0.0.1", "{a}");
    let srv = dig(dns, &["_concoord._tcp.counterdomain.com", "SRV"]);
    assert!(
        srv.contains(&format!(" {p0} ")) && srv.contains(&format!(" {p1} ")),
        "{srv}"
    );

    let ps = s.ok(&["remote", "ps", &host]);
    assert!(
        ps.contains(&format!("replica-{p0}")) && ps.contains(&format!("replica-{p1}")),
        "{ps}"
    );
    assert_eq!(ps.matches("running").count(), 2, "{ps}");

    // Same port again: refused, the running one is named.
    let mut again = vec!["remote", "replica", &host, "-a", "127.0.0.1", "-p", &p0s];
    again.extend(TIMING);
    let e = s.fails(&again);
    assert!(e.contains("already runs there") && e.contains("PID"), "{e}");

    // A replica that cannot start (its port is taken by sshd) is reported with its log.
    let sshd_port = s.port.to_string();
    let e = s.fails(&[
        "remote",
        "replica",
        &host,
        "-a",
        "127.0.0.1",
        "-p",
        &sshd_port,
    ]);
    assert!(e.contains("exited at once"), "{e}");

    // Stop one, then the rest.
    drop(client);
    let begun = Instant::now();
    let out = s.ok(&["remote", "stop", &host, "--port", &p0s]);
    assert!(
        out.contains(&format!("Stopped replica-{p0} on {host} (PID")),
        "{out}"
    );
    assert!(
        std::net::TcpStream::connect(&a0).is_err(),
        "{a0} still listens"
    );
    let out = s.ok(&["remote", "stop", &host]);
    assert!(out.contains(&format!("Stopped replica-{p1}")), "{out}");
    eprintln!("stopping took {:?}", begun.elapsed());
    assert!(
        std::net::TcpStream::connect(&a1).is_err(),
        "{a1} still listens"
    );
    let ps = s.ok(&["remote", "ps", &host]);
    assert!(ps.contains("Nothing started by concoord"), "{ps}");
    let out = s.ok(&["remote", "stop", &host]);
    assert!(out.contains("Nothing started by concoord"), "{out}");
}

#[test]
fn route53_credentials_are_stored_privately_on_the_host() {
    let s = SshServer::start();
    s.configure();
    let install = s.path("r53 home");
    s.ok(&["remote", "installdir", install.to_str().unwrap()]);
    let host = s.host();
    let out = s.ok(&["remote", "route53", &host, "AKIDEXAMPLE", "s3cr'et \"x\""]);
    let file = install.join("config").join("route53");
    assert!(out.contains(&file.display().to_string()), "{out}");
    assert!(!out.contains("s3cr"), "the secret is never printed: {out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = concoord::dns::route53::credentials::load(&file).unwrap();
    assert_eq!(stored.key_id.as_deref(), Some("AKIDEXAMPLE"));
    assert_eq!(stored.secret.as_deref(), Some("s3cr'et \"x\""));
    // The config dir of the replicas started there, not the user's ~/.config.
    assert!(install.join("config").is_dir());
    let e = s.fails(&["remote", "route53", &host, "AKID", " "]);
    assert!(e.contains("must not be empty"), "{e}");
}

#[test]
fn a_missing_sshd_names_the_package() {
    let e = find_sshd(Path::new("/nonexistent/sshd")).unwrap_err();
    assert!(e.contains("openssh-server"), "{e}");
    assert!(find_sshd(Path::new(SSHD)).is_ok() || !Path::new(SSHD).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_an_image_runs_replicas_as_containers() {
    let image = TestImage::build();
    let s = SshServer::start();
    let install = s.path("image home");
    let _started = StartedGuard {
        install_dir: install.clone(),
    };
    s.configure();
    s.ok(&["remote", "installdir", install.to_str().unwrap()]);
    let host = s.host();

    let missing = format!("{}-missing", image.name);
    let e = s.fails(&["remote", "setup", &host, "--image", &missing]);
    assert!(e.contains("docker save") && e.contains(&missing), "{e}");
    let out = s.ok(&["remote", "setup", &host, "--image", &image.name]);
    let version = format!("(concoord {})", env!("CARGO_PKG_VERSION"));
    assert!(
        out.contains(&format!("image {}", image.name)) && out.contains(&version),
        "{out}"
    );
    let cfg = s.ok(&["remote", "config"]);
    assert!(
        cfg.contains(&format!("(runs image {})", image.name)),
        "{cfg}"
    );

    let port = free_port();
    let ports = port.to_string();
    let addr = format!("127.0.0.1:{port}");
    let mut flags = vec![
        "remote",
        "replica",
        &host,
        "-o",
        "counter",
        "-a",
        "127.0.0.1",
    ];
    flags.extend(["-p", &ports]);
    flags.extend(TIMING);
    let out = s.ok(&flags);
    assert!(
        out.contains(&format!("Started replica on {host}: container ")),
        "{out}"
    );
    wait_for_members(&addr, 1).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    client.call("counter", "increment", vec![]).await.unwrap();
    let v = client.call("counter", "getvalue", vec![]).await.unwrap();
    assert_eq!(v.as_i64(), Some(1), "{v:?}");
    drop(client);
    let ps = s.ok(&["remote", "ps", &host]);
    assert!(
        ps.contains(&format!("replica-{port}  container ")) && ps.contains("running"),
        "{ps}"
    );
    let log = std::fs::read_to_string(install.join(format!("logs/replica-{port}.log")));
    assert!(
        log.is_ok(),
        "the container's log is followed into the install dir"
    );

    let out = s.ok(&["remote", "stop", &host]);
    assert!(
        out.contains(&format!("Stopped replica-{port} on {host} (container")),
        "{out}"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still listens"
    );
    let left = run_bounded(
        Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("name=concoord-replica-{port}-"),
        ]),
        Duration::from_secs(30),
    );
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "container left: {left:?}"
    );
}

/// `setup --pki --auth-file`: the host gets a replica certificate from the local CA, the
/// CA and the auth file, each written 0600 through ssh; `remote replica` then starts a
/// replica that serves TLS and checks identities, without any flag for it.
#[test]
fn setup_with_a_pki_sends_a_certificate_and_replicas_serve_tls_with_auth() {
    let s = SshServer::start();
    s.configure();
    let install = s.path("tls home");
    let _started = StartedGuard {
        install_dir: install.clone(),
    };
    s.ok(&["remote", "installdir", install.to_str().unwrap()]);
    let host = s.host();
    let pki = s.path("pki");
    s.ok(&["certs", "init", pki.to_str().unwrap()]);
    let token = "remote-admin-token-8c7d6e5f4a";
    let auth = s.path("auth");
    std::fs::write(&auth, format!("token operator admin {token}\n")).unwrap();
    let out = s.ok(&[
        "remote",
        "setup",
        &host,
        "--pki",
        pki.to_str().unwrap(),
        "--tls-host",
        "127.0.0.1",
        "--auth-file",
        auth.to_str().unwrap(),
    ]);
    assert!(out.contains("(mode 0600)"), "{out}");
    assert!(!out.contains(token), "{out}");
    let config = install.join("config");
    for file in ["tls.crt", "tls.key", "tls-ca.crt", "auth"] {
        let mode = std::fs::metadata(config.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(config.join("tls-ca.crt")).unwrap(),
        std::fs::read_to_string(pki.join("ca.crt")).unwrap()
    );
    let stored = std::fs::read_to_string(config.join("auth")).unwrap();
    assert!(
        !stored.contains(token),
        "the host keeps digests only: {stored}"
    );
    let shown = s.ok(&["remote", "config"]);
    assert!(!shown.contains("PRIVATE"), "{shown}");

    let port = free_port();
    let ports = port.to_string();
    let mut flags = vec![
        "remote",
        "replica",
        &host,
        "-o",
        "counter",
        "-a",
        "127.0.0.1",
    ];
    flags.extend(["-p", &ports]);
    flags.extend(TIMING);
    s.ok(&flags);
    let addr = format!("127.0.0.1:{port}");
    let ca = pki.join("ca.crt");
    let call = |extra: &[&str]| {
        let mut args = vec!["call", addr.as_str(), "--ca", ca.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend(["counter", "increment"]);
        s.cc(&args)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = call(&["--token", token]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS call: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = call(&[]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("PermissionError"), "{why}");
    let plain = s.cc(&["call", &addr, "counter", "getvalue"]);
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("TLS only"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    s.ok(&["remote", "stop", &host]);
}
