//! The rendered StatefulSet for 3 replicas, run as docker containers: each container gets
//! the command line and environment the kubelet would give that pod (`pod_process`), its
//! pod DNS name and the headless Service name as network aliases, the same user and
//! read-only root. Pod 0 founds, the others are added as the operator would (member
//! first, then the pod), readiness is the rendered exec probe, and the nameserver answers
//! the cluster's SRV records. TLS is on, as by default: the certificate Secret the operator
//! would make (the same builders, the same names) is mounted where the pod mounts it, so the
//! replicas link, the probes and `concoord status` go over TLS. Images are built here from
//! the host's `concoord` binary and its libraries (nothing is pulled); everything is removed
//! when the test ends.

use concoord_operator::crd::ConCoordCluster;
use concoord_operator::names::ClusterNames;
use concoord_operator::podexec::{PodFacts, pod_process};
use concoord_operator::render::{RenderInput, render};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NS: &str = "apps";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's containers, network, image and build context, even on failure.
struct Cleanup {
    prefix: String,
    containers: Vec<String>,
    context: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["network", "rm", &self.prefix]);
        let _ = docker(&["image", "rm", "-f", &format!("{}:test", self.prefix)]);
        let _ = std::fs::remove_dir_all(&self.context);
    }
}

/// The `concoord` binary cargo built for this workspace.
fn concoord_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/docker_pods-HASH -> target/debug/concoord
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("concoord"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p concoord)",
        bin.display()
    );
    bin
}

/// A scratch image with /concoord and the shared libraries `ldd` lists for it.
fn build_image(tag: &str, context: &Path) {
    let bin = concoord_binary();
    std::fs::create_dir_all(context).expect("create build context");
    std::fs::copy(&bin, context.join("concoord")).expect("copy concoord");
    let ldd = Command::new("ldd").arg(&bin).output().expect("run ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from)
        else {
            continue;
        };
        let dest = context
            .join("root")
            .join(path.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dest.parent().expect("lib dir")).expect("lib dir");
        std::fs::copy(&path, &dest).expect("copy a shared library");
    }
    std::fs::create_dir_all(context.join("root/tmp")).expect("tmp");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nCOPY concoord /concoord\nUSER 65532:65532\n",
    )
    .expect("write Dockerfile");
    docker_ok(&["build", "-q", "-t", tag, &context.to_string_lossy()]);
}

fn probe_ready(container: &str) -> bool {
    docker(&["exec", container, "/concoord", "probe", "ready"])
        .status
        .success()
}

fn wait_ready(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe_ready(container) {
        assert!(
            Instant::now() < deadline,
            "{container} not ready in 60 s:\n{}",
            String::from_utf8_lossy(&docker(&["logs", "--tail", "30", container]).stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn rendered_pods_bootstrap_a_cluster_that_answers_srv() {
    // Docker is required (only the kind suite may skip): say what is missing.
    assert!(
        docker(&["info"]).status.success(),
        "no docker engine: install Debian's docker.io and start dockerd (`docker info` failed)"
    );
    let prefix = format!("cco-pods-{}", std::process::id());
    let mut cleanup = Cleanup {
        prefix: prefix.clone(),
        containers: Vec::new(),
        context: std::env::temp_dir().join(&prefix),
    };
    let image = format!("{prefix}:test");
    build_image(&image, &cleanup.context);
    // A subnet of our own, so each pod's IP is known before it starts (its argv carries
    // it, as the downward API would); the first free candidate is taken.
    let subnet_base = (0..20u32)
        .map(|k| {
            format!(
                "10.{}.{}",
                200 + (std::process::id() + k) % 50,
                (std::process::id() / 50 + k) % 250
            )
        })
        .find(|base| {
            docker(&[
                "network",
                "create",
                "--subnet",
                &format!("{base}.0/24"),
                &prefix,
            ])
            .status
            .success()
        })
        .expect("a free subnet for the test network");

    let cc: ConCoordCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "concoord.io/v1alpha1", "kind": "ConCoordCluster",
        "metadata": {"name": "demo", "namespace": NS, "uid": "u-1"},
        "spec": {"replicas": 3},
    }))
    .expect("cluster");
    let names = ClusterNames::new("demo", NS);

    // The replicas' certificate Secret, as files where the pods mount it.
    let tls_dir = cleanup.context.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    let ca = concoord::pki::new_ca("demo CA", 30).expect("CA");
    let server = concoord::pki::issue(
        &ca,
        "demo",
        &concoord_operator::security::server_hosts(&names, &names.default_domain()),
        30,
        concoord::pki::CertKind::Replica,
    )
    .expect("server certificate");
    for (file, text) in [
        ("ca.crt", &ca.cert),
        ("tls.crt", &server.cert),
        ("tls.key", &server.key),
    ] {
        std::fs::write(tls_dir.join(file), text).expect("write a certificate file");
    }
    let tls_mount = format!(
        "{}:{}:ro",
        tls_dir.display(),
        concoord_operator::security::TLS_DIR
    );

    // Starts pod `i` as the StatefulSet would, with the ConfigMap as the operator holds it.
    let start = |i: u32, bootstrapped: bool| -> String {
        let r = render(
            &cc,
            &RenderInput {
                statefulset_replicas: 3,
                bootstrapped,
                cluster_domain: "cluster.local".into(),
            },
        )
        .expect("render");
        let cms = BTreeMap::from([(
            names.bootstrap_configmap(),
            r.configmap.data.clone().unwrap_or_default(),
        )]);
        let name = format!("{prefix}-{i}");
        let ip = format!("{subnet_base}.{}", 10 + i);
        let p = pod_process(
            &r.statefulset,
            &PodFacts {
                ordinal: i,
                ip: ip.clone(),
            },
            &cms,
        )
        .expect("pod process");
        let pod_dns = format!("{}.{}", p.pod_name, names.peer_domain());
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--network".into(),
            prefix.clone(),
            "--ip".into(),
            ip,
            "--hostname".into(),
            p.pod_name.clone(),
            "--network-alias".into(),
            pod_dns,
            "--network-alias".into(),
            names.peer_domain(),
            "--read-only".into(),
            "--tmpfs".into(),
            "/data:uid=65532,gid=65532".into(),
            "-v".into(),
            tls_mount.clone(),
        ];
        for (k, v) in &p.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push("--entrypoint".into());
        args.push(p.argv[0].clone());
        args.push(image.clone());
        args.extend(p.argv[1..].iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&refs);
        name
    };

    // Bootstrap: only pod 0, allowed to found.
    let pod0 = start(0, false);
    cleanup.containers.push(pod0.clone());
    wait_ready(&pod0);
    // From now on the operator has cleared found-if; each new member is added first.
    for i in 1..3u32 {
        docker_ok(&[
            "exec",
            &pod0,
            "/concoord",
            "membership",
            "add",
            &names.member_address(0),
            &names.member_address(i),
        ]);
        let pod = start(i, true);
        cleanup.containers.push(pod.clone());
        wait_ready(&pod);
    }
    let status = docker_ok(&[
        "exec",
        &pod0,
        "/concoord",
        "status",
        "--json",
        &names.member_address(0),
    ]);
    for i in 0..3 {
        assert!(status.contains(&names.member_address(i)), "{status}");
    }
    // The nameserver (container port 5353, the DNS Service's target) answers SRV.
    let ip0 = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &pod0,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dig = Command::new("dig")
            .args([
                &format!("@{ip0}"),
                "-p",
                "5353",
                "+short",
                "+time=2",
                "+tries=1",
                "SRV",
                "_concoord._tcp.demo.apps.concoord",
            ])
            .output()
            .expect("run dig (Debian package bind9-dnsutils)");
        let answer = String::from_utf8_lossy(&dig.stdout).to_string();
        let records = answer.lines().filter(|l| l.contains(" 14000 ")).count();
        if records == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "SRV answer: {answer:?}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Pod 0 loses its disk after bootstrap (found-if is cleared by then): it must rejoin
    // the group through the headless name, which lists itself too, never found a new one.
    let report = |container: &str, addr: &str| -> serde_json::Value {
        let json = docker_ok(&["exec", container, "/concoord", "status", "--json", addr]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
        v.as_array()
            .and_then(|a| a.iter().find(|r| r["addr"] == addr))
            .cloned()
            .unwrap_or_else(|| panic!("no report of {addr} in {json}"))
    };
    let before = report(&format!("{prefix}-1"), &names.member_address(1));
    assert_eq!(
        before["members"].as_object().map(|m| m.len()),
        Some(3),
        "{before}"
    );
    docker_ok(&["rm", "-f", &pod0]);
    let pod0 = start(0, true);
    wait_ready(&pod0);
    let after = report(&pod0, &names.member_address(0));
    // A founder would be replica 1 alone in view 1; a rejoined replica replaced the old
    // voter under a new id, in a later view of the same three members.
    assert_ne!(after["replica"], 1, "{after}");
    assert_eq!(
        after["members"].as_object().map(|m| m.len()),
        Some(3),
        "{after}"
    );
    assert!(
        after["view"].as_u64() > before["view"].as_u64(),
        "{before} -> {after}"
    );
    drop(cleanup);
}
