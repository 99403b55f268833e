//! TLS on the replica's port (issue 14): real replica processes with certificates from a
//! CA made by the test, real TLS clients, and the mistakes users make.

mod common;

use common::{BIN, TIMING_FLAGS, free_ports};
use concoord::client::{Client, ClientOptions, fetch_status_with};
use concoord::command::Value;
use concoord::net::secure::ClientTls;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA of the test's own that signs certificates for 127.0.0.1.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("CA parameters: {e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let pem = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("CA certificate: {e}"))
            .pem();
        Ca { params, key, pem }
    }

    /// A certificate for 127.0.0.1 named `cn`, valid now unless `expired`; its PEM and its
    /// key's PEM.
    fn issue(&self, cn: &str, expired: bool) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap_or_else(|e| panic!("parameters: {e}"));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        // A replica's certificate, as `concoord certs issue --host` makes it.
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("certificate: {e}"));
        (cert.pem(), key.serialize_pem())
    }
}

/// Files of one identity: certificate, key and the CA, in a directory of their own.
struct Identity {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn write_identity(dir: &Path, name: &str, ca: &Ca, expired: bool) -> Identity {
    let (cert, key) = ca.issue(name, expired);
    let id = Identity {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join(format!("{name}-ca.crt")),
    };
    std::fs::write(&id.cert, cert).unwrap_or_else(|e| panic!("write cert: {e}"));
    std::fs::write(&id.key, key).unwrap_or_else(|e| panic!("write key: {e}"));
    std::fs::write(&id.ca, &ca.pem).unwrap_or_else(|e| panic!("write CA: {e}"));
    id
}

fn spawn_tls_replica(port: u16, bootstrap: Option<String>, id: Option<&Identity>) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["replica", "-o", "counter", "-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(TIMING_FLAGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(id) = id {
        cmd.arg("--tls-cert")
            .arg(&id.cert)
            .arg("--tls-key")
            .arg(&id.key)
            .arg("--tls-ca")
            .arg(&id.ca);
    }
    if std::env::var_os("CONCOORD_TEST_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    if let Some(b) = bootstrap {
        cmd.arg("-b").arg(b);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("start concoord replica: {e}"))
}

/// Replica processes killed on drop.
struct Procs(Vec<Option<Child>>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn client_tls(ca: &Path, cert: Option<&Identity>) -> ClientTls {
    ClientTls::load(
        ca,
        cert.map(|c| c.cert.as_path()),
        cert.map(|c| c.key.as_path()),
    )
    .unwrap_or_else(|e| panic!("client TLS: {e}"))
}

fn tls_options(tls: &ClientTls) -> ClientOptions {
    ClientOptions {
        tls: Some(tls.clone()),
        call_timeout: Some(Duration::from_secs(10)),
        failover_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// Waits until some replica among `ports` leads a view of `members`; its index.
async fn wait_for_leader(ports: &[u16], members: usize, tls: &ClientTls) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, port) in ports.iter().enumerate() {
            let addr = format!("127.0.0.1:{port}");
            if let Ok(s) = fetch_status_with(&addr, Duration::from_millis(500), Some(tls)).await
                && s.is_leader
                && s.view.members.len() == members
            {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader of {members} members over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn addrs(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Three replicas with mutual TLS: the group forms, serves calls over TLS, survives its
/// leader's death and adds a member that joins over TLS.
async fn tls_group(dir: &Path, ca: &Ca, n: usize) -> (Procs, Vec<u16>, ClientTls) {
    let ports = free_ports(n);
    let ids: Vec<Identity> = (0..n)
        .map(|i| write_identity(dir, &format!("replica-{i}"), ca, false))
        .collect();
    let tls = client_tls(&ids[0].ca, None);
    let mut procs = Procs(Vec::new());
    for (i, port) in ports.iter().enumerate() {
        let boot = (i > 0).then(|| format!("127.0.0.1:{}", ports[0]));
        procs
            .0
            .push(Some(spawn_tls_replica(*port, boot, Some(&ids[i]))));
        wait_for_leader(&ports[..=i], i + 1, &tls).await;
    }
    (procs, ports, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_group_serves_calls_fails_over_and_adds_a_member() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = Ca::new("group CA");
    let (mut procs, mut ports, tls) = tls_group(dir.path(), &ca, 3).await;
    let client = Client::connect(&addrs(&ports), tls_options(&tls))
        .await
        .unwrap_or_else(|e| panic!("TLS client: {e}"));
    for _ in 0..5 {
        client
            .call("counter", "increment", vec![])
            .await
            .unwrap_or_else(|e| panic!("increment over TLS: {e}"));
    }
    // The leader dies: the client fails over to the new one, still over TLS.
    let leader = wait_for_leader(&ports, 3, &tls).await;
    if let Some(mut child) = procs.0[leader].take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    client
        .call("counter", "increment", vec![])
        .await
        .unwrap_or_else(|e| panic!("increment after failover: {e}"));
    let value = client
        .call("counter", "getvalue", vec![])
        .await
        .unwrap_or_else(|e| panic!("getvalue after failover: {e}"));
    assert_eq!(value, Value::from(6));
    // A fourth replica with a certificate from the same CA joins over TLS.
    let extra = free_ports(1)[0];
    let id = write_identity(dir.path(), "replica-3", &ca, false);
    let live = ports
        .iter()
        .enumerate()
        .find(|(i, _)| *i != leader)
        .map(|(_, p)| *p)
        .unwrap_or(ports[0]);
    procs.0.push(Some(spawn_tls_replica(
        extra,
        Some(format!("127.0.0.1:{live}")),
        Some(&id),
    )));
    ports.push(extra);
    // Three live members of a view of four.
    let survivors: Vec<u16> = ports
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, p)| *p)
        .collect();
    wait_for_leader(&survivors, 4, &tls).await;
    let value = client
        .call("counter", "getvalue", vec![])
        .await
        .unwrap_or_else(|e| panic!("getvalue: {e}"));
    assert_eq!(value, Value::from(6));
    let _ = client.close().await;
    // The dead replica leaves the view through the CLI, over TLS.
    let ca = dir.path().join("replica-0-ca.crt");
    let dead = format!("127.0.0.1:{}", ports[leader]);
    cli_over_tls(&["membership", "remove", &addrs(&survivors), &dead], &ca);
    wait_for_leader(&survivors, 3, &tls).await;
    // And `concoord type list` reaches the group over TLS too (no user types here).
    cli_over_tls(&["type", "list", &addrs(&survivors)], &ca);
}

/// Runs `concoord ARGS --ca CA`, which must succeed.
fn cli_over_tls(args: &[&str], ca: &Path) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--ca")
        .arg(ca)
        .output()
        .unwrap_or_else(|e| panic!("concoord {args:?}: {e}"));
    assert!(
        out.status.success(),
        "concoord {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_without_the_groups_ca_cannot_join() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = Ca::new("group CA");
    let (_procs, ports, tls) = tls_group(dir.path(), &ca, 2).await;
    // A certificate from another CA: our replicas do not trust it, nor it them.
    let other = Ca::new("another CA");
    let stranger = write_identity(dir.path(), "stranger", &other, false);
    let port = free_ports(1)[0];
    let mut joiner = spawn_tls_replica(
        port,
        Some(format!("127.0.0.1:{}", ports[0])),
        Some(&stranger),
    );
    // A plaintext replica cannot join a TLS group either.
    let plain_port = free_ports(1)[0];
    let mut plain = spawn_tls_replica(plain_port, Some(format!("127.0.0.1:{}", ports[0])), None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader = wait_for_leader(&ports, 2, &tls).await;
    let status = fetch_status_with(
        &format!("127.0.0.1:{}", ports[leader]),
        Duration::from_secs(1),
        Some(&tls),
    )
    .await
    .unwrap_or_else(|e| panic!("status: {e}"));
    assert_eq!(status.view.members.len(), 2, "{:?}", status.view);
    for child in [&mut joiner, &mut plain] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_that_meet_fail_fast_and_say_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = Ca::new("group CA");
    let (_procs, ports, tls) = tls_group(dir.path(), &ca, 1).await;
    let quick = ClientOptions {
        connect_timeout: Duration::from_secs(3),
        ..ClientOptions::default()
    };
    // Plaintext client, TLS replica.
    let started = Instant::now();
    let e = match Client::connect(&addrs(&ports), quick.clone()).await {
        Ok(_) => panic!("a plaintext client reached a TLS replica"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("serves TLS only"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // TLS client, plaintext replica.
    let plain_port = free_ports(1)[0];
    let _plain = Procs(vec![Some(spawn_tls_replica(plain_port, None, None))]);
    let plain_addr = format!("127.0.0.1:{plain_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while concoord::client::fetch_status(&plain_addr, Duration::from_millis(500))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the plaintext replica did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let e = match Client::connect(
        &plain_addr,
        ClientOptions {
            tls: Some(tls.clone()),
            ..quick
        },
    )
    .await
    {
        Ok(_) => panic!("a TLS client reached a plaintext replica"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("does not serve TLS"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = Ca::new("group CA");
    // A replica whose certificate expired: clients refuse it.
    let stale = write_identity(dir.path(), "stale", &ca, true);
    let port = free_ports(1)[0];
    let _procs = Procs(vec![Some(spawn_tls_replica(port, None, Some(&stale)))]);
    let tls = client_tls(&stale.ca, None);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        match fetch_status_with(&addr, Duration::from_secs(1), Some(&tls)).await {
            Ok(_) => panic!("a client accepted an expired replica certificate"),
            Err(e) if e.to_string().contains("xpired") => break e.to_string(),
            Err(e) => {
                assert!(Instant::now() < deadline, "no expiry error: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(e.contains("xpired"), "{e}");
    // A client whose certificate expired: the replica refuses it.
    let ca2 = Ca::new("second CA");
    let (_procs2, ports, _) = tls_group(dir.path(), &ca2, 1).await;
    let old_client = write_identity(dir.path(), "old-client", &ca2, true);
    let tls = client_tls(&old_client.ca, Some(&old_client));
    let result = fetch_status_with(
        &format!("127.0.0.1:{}", ports[0]),
        Duration::from_secs(2),
        Some(&tls),
    )
    .await;
    let e = match result {
        Ok(_) => panic!("a replica accepted an expired client certificate"),
        Err(e) => e.to_string(),
    };
    // TLS 1.3 checks a client certificate after the client's side of the handshake: the
    // replica's alert reaches the client as it reads the welcome, at once.
    assert!(e.contains("alert") && !e.contains("timed out"), "{e}");
    eprintln!("expired client certificate: {e}");
}

/// The certificate a TLS server at `addr` shows, in DER.
async fn served_certificate(addr: &str, ca: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read CA: {e}"));
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.unwrap_or_else(|e| panic!("CA PEM: {e}")))
            .unwrap_or_else(|e| panic!("CA: {e}"));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|e| panic!("versions: {e}"))
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .unwrap_or_else(|e| panic!("name: {e}"));
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    certs
        .first()
        .map(|c| c.to_vec())
        .unwrap_or_else(|| panic!("no certificate served"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_used_without_losing_the_leader() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = Ca::new("group CA");
    let (_procs, ports, tls) = tls_group(dir.path(), &ca, 3).await;
    let leader = wait_for_leader(&ports, 3, &tls).await;
    let addr = format!("127.0.0.1:{}", ports[leader]);
    let before_status = fetch_status_with(&addr, Duration::from_secs(1), Some(&tls))
        .await
        .unwrap_or_else(|e| panic!("status: {e}"));
    let ca_file = dir.path().join(format!("replica-{leader}-ca.crt"));
    let before = served_certificate(&addr, &ca_file).await;
    // The Secret changes under the replica: a new certificate and key in the same files.
    let (cert, key) = ca.issue(&format!("replica-{leader}-renewed"), false);
    std::fs::write(dir.path().join(format!("replica-{leader}.key")), key)
        .unwrap_or_else(|e| panic!("write key: {e}"));
    std::fs::write(dir.path().join(format!("replica-{leader}.crt")), cert)
        .unwrap_or_else(|e| panic!("write cert: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_certificate(&addr, &ca_file).await == before {
        assert!(
            Instant::now() < deadline,
            "the replica still shows its old certificate"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = fetch_status_with(&addr, Duration::from_secs(1), Some(&tls))
        .await
        .unwrap_or_else(|e| panic!("status: {e}"));
    assert!(after.is_leader, "the leader changed during the rotation");
    assert_eq!(after.ballot, before_status.ballot);
    let client = Client::connect(&addrs(&ports), tls_options(&tls))
        .await
        .unwrap_or_else(|e| panic!("TLS client after rotation: {e}"));
    client
        .call("counter", "increment", vec![])
        .await
        .unwrap_or_else(|e| panic!("increment after rotation: {e}"));
    let _ = client.close().await;
}

#[test]
fn a_replica_with_part_of_the_tls_flags_refuses_to_start() {
    let out = Command::new(BIN)
        .args([
            "replica",
            "-a",
            "127.0.0.1",
            "-p",
            "1",
            "--tls-cert",
            "/tmp/x.crt",
        ])
        .output()
        .unwrap_or_else(|e| panic!("run concoord: {e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing: --tls-key, --tls-ca"), "{err}");
}

/// A client that finds the group through its domain's SRV records dials the IPs they give
/// and checks the certificate for the name the nameserver published (`r1.DOMAIN`), so a
/// replica certificate that names `*.DOMAIN` serves, and one that does not is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_discover_the_group_by_srv_check_the_published_names() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let pki = dir.path().join("pki");
    let pki_s = pki.display().to_string();
    let certs = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("certs")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("certs: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    certs(&["init", &pki_s]);
    const DOMAIN: &str = "tls-srv.concoord";
    certs(&[
        "issue",
        &pki_s,
        "named",
        "--host",
        "127.0.0.1",
        "--host",
        "*.tls-srv.concoord",
    ]);
    certs(&["issue", &pki_s, "unnamed", "--host", "127.0.0.1"]);
    let mut procs = Procs(Vec::new());
    let call = |dns: u16| {
        Command::new(BIN)
            .args(["call", DOMAIN, "--dns-server", &format!("127.0.0.1:{dns}")])
            .args(["--ca", &format!("{pki_s}/ca.crt"), "--timeout", "5s"])
            .args(["counter", "increment"])
            .output()
            .unwrap_or_else(|e| panic!("call: {e}"))
    };
    for (cert, serves) in [("named", true), ("unnamed", false)] {
        let ports = free_ports(2);
        let (port, dns) = (ports[0], ports[1]);
        let child = Command::new(BIN)
            .args([
                "replica",
                "-o",
                "counter",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .args(TIMING_FLAGS)
            .args([
                "-n",
                DOMAIN,
                "--dns-addr",
                "127.0.0.1",
                "--dns-port",
                &dns.to_string(),
            ])
            .args(["--tls-cert", &format!("{pki_s}/{cert}.crt")])
            .args(["--tls-key", &format!("{pki_s}/{cert}.key")])
            .args(["--tls-ca", &format!("{pki_s}/ca.crt")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("replica: {e}"));
        procs.0.push(Some(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        let out = loop {
            let out = call(dns);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            // Wait out the start (no SRV records yet, or no leader).
            if out.status.success() || stderr.contains("certificate") {
                break out;
            }
            assert!(Instant::now() < deadline, "{cert}: {stderr}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if serves {
            assert!(out.status.success(), "{cert}: {stderr}");
        } else {
            assert!(!out.status.success());
            assert!(stderr.contains("r1.tls-srv.concoord"), "{stderr}");
        }
    }
}
