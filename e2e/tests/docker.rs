//! Multi-host tests in docker: three replica containers on a docker network, found by
//! container name, the first founding the group (and serving DNS), the others joining
//! with -b; a `concoord workload` container increments and reads a counter while the test
//! kills, pauses, cuts off and restarts replicas. Each workload's history is checked for
//! linearizability, and the counter's final value must lie between the acknowledged
//! increments and those plus the ones whose outcome is unknown: nothing acknowledged is
//! lost, nothing applied twice.
//!
//! Docker is required: without it every test fails and says what is missing. The
//! scenarios take turns (two clusters at once would overload a small machine), and each
//! removes its containers, volumes and network when it ends, also on failure.

use concoord_e2e::E2eError;
use concoord_e2e::cluster::{Cluster, DNS_PORT, DOMAIN, PORT, Spec, Summary};
use concoord_e2e::docker::{self, dig_image};
use concoord_e2e::process;
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

static TURN: Mutex<()> = Mutex::new(());
/// A workload plus the faults during it never take longer than this.
const WORKLOAD_LIMIT: Duration = Duration::from_secs(120);

const MEMORY: Spec = Spec {
    replicas: 3,
    durable: false,
};
const DURABLE: Spec = Spec {
    replicas: 3,
    durable: true,
};

/// Runs one scenario against a fresh cluster; prints its timing, and the replicas' logs
/// when it fails.
fn scenario(
    name: &str,
    spec: Spec,
    body: impl FnOnce(&Cluster) -> Result<(), E2eError>,
) -> Result<(), E2eError> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    docker::require_docker()?;
    static SWEEP: Once = Once::new();
    SWEEP.call_once(docker::sweep_leftovers);
    // The image build (first scenario only) is timed on its own.
    docker::replica_image()?;
    let started = Instant::now();
    eprintln!("[e2e] {name}: starting {} replicas", spec.replicas);
    let cluster = Cluster::start(name, spec)?;
    eprintln!(
        "[e2e] {name}: cluster up in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        cluster.addrs()
    );
    let result = body(&cluster);
    if let Err(e) = &result {
        eprintln!("[e2e] {name}: FAILED: {e}\n{}", cluster.logs());
    }
    drop(cluster);
    eprintln!(
        "[e2e] {name}: {} in {:.1}s",
        if result.is_ok() { "passed" } else { "failed" },
        started.elapsed().as_secs_f64()
    );
    result
}

fn checked(name: &str, summary: Summary) -> Result<Summary, E2eError> {
    eprintln!("[e2e] {name}: workload {}", summary.line());
    summary.check()?;
    Ok(summary)
}

fn pause(seconds: u64) {
    thread::sleep(Duration::from_secs(seconds));
}

#[test]
fn killing_the_leader_container_loses_no_acknowledged_increment() -> Result<(), E2eError> {
    scenario("kill-leader", MEMORY, |c| {
        let load = c.start_workload(4, Duration::from_secs(12))?;
        pause(3);
        let leader = c.leader()?;
        c.act("kill", leader)?;
        let summary = checked("kill-leader", load.finish(WORKLOAD_LIMIT)?)?;
        if summary.unknown + summary.acknowledged == 0 {
            return Err(E2eError::Check("nothing was sent".into()));
        }
        // The two survivors lead on without the killed one.
        let now = c.leader()?;
        if now == leader {
            return Err(E2eError::Check(format!(
                "{} was killed but still counts as the leader",
                c.name(leader)
            )));
        }
        let value = c.counter_value()?;
        if value != summary.final_value {
            return Err(E2eError::Check(format!(
                "the counter reads {value} after the workload, the workload's last read was {}",
                summary.final_value
            )));
        }
        Ok(())
    })
}

#[test]
fn a_paused_follower_catches_up() -> Result<(), E2eError> {
    scenario("pause-follower", MEMORY, |c| {
        let load = c.start_workload(4, Duration::from_secs(10))?;
        pause(2);
        let follower = (c.leader()? + 1) % c.spec.replicas;
        c.act("pause", follower)?;
        pause(4);
        c.act("unpause", follower)?;
        checked("pause-follower", load.finish(WORKLOAD_LIMIT)?)?;
        c.wait_healthy(c.spec.replicas, Duration::from_secs(30))?;
        Ok(())
    })
}

#[test]
fn a_leader_cut_off_the_network_and_reconnected_rejoins() -> Result<(), E2eError> {
    scenario("partition", MEMORY, |c| {
        let load = c.start_workload(4, Duration::from_secs(14))?;
        pause(2);
        let leader = c.leader()?;
        c.disconnect(leader)?;
        pause(5);
        // The majority side elected a leader of its own meanwhile.
        let others: Vec<String> = (0..c.spec.replicas)
            .filter(|&i| i != leader)
            .map(|i| c.addr(i))
            .collect();
        let majority = c.status_via(&others.join(","))?;
        if !majority
            .iter()
            .any(|r| r.reachable && r.is_leader && r.addr != c.addr(leader))
        {
            c.reconnect(leader)?;
            return Err(E2eError::Check(format!(
                "no leader among the majority while {} was cut off: {majority:?}",
                c.name(leader)
            )));
        }
        c.reconnect(leader)?;
        checked("partition", load.finish(WORKLOAD_LIMIT)?)?;
        c.wait_healthy(c.spec.replicas, Duration::from_secs(60))?;
        Ok(())
    })
}

#[test]
fn a_rolling_restart_with_volumes_keeps_every_increment() -> Result<(), E2eError> {
    scenario("rolling-restart", DURABLE, |c| {
        let load = c.start_workload(4, Duration::from_secs(25))?;
        pause(2);
        for i in 0..c.spec.replicas {
            c.act("stop", i)?;
            c.act("start", i)?;
            // Back as a member of the full view before the next one goes.
            c.wait_until(
                Duration::from_secs(60),
                &format!("{} is back", c.name(i)),
                |s| {
                    Ok(s.iter().any(|r| {
                        r.addr == c.addr(i)
                            && r.reachable
                            && r.state == "member"
                            && r.members.len() == c.spec.replicas
                    }) && s.iter().any(|r| r.reachable && r.is_leader))
                },
            )?;
        }
        checked("rolling-restart", load.finish(WORKLOAD_LIMIT)?)?;
        c.wait_healthy(c.spec.replicas, Duration::from_secs(60))?;
        Ok(())
    })
}

#[test]
fn the_whole_cluster_stopped_and_started_again_keeps_its_state() -> Result<(), E2eError> {
    scenario("full-restart", DURABLE, |c| {
        let load = c.start_workload(4, Duration::from_secs(6))?;
        let before = checked("full-restart", load.finish(WORKLOAD_LIMIT)?)?;
        for i in 0..c.spec.replicas {
            c.act("stop", i)?;
        }
        for i in 0..c.spec.replicas {
            if c.replica(i).running()? {
                return Err(E2eError::Check(format!("{} still runs", c.name(i))));
            }
        }
        for i in 0..c.spec.replicas {
            c.act("start", i)?;
        }
        c.wait_healthy(c.spec.replicas, Duration::from_secs(60))?;
        let value = c.counter_value()?;
        if value != before.final_value {
            return Err(E2eError::Check(format!(
                "after the restart the counter reads {value}, before it read {}",
                before.final_value
            )));
        }
        let load = c.start_workload(4, Duration::from_secs(5))?;
        let after = checked("full-restart", load.finish(WORKLOAD_LIMIT)?)?;
        if after.start_value != before.final_value {
            return Err(E2eError::Check(format!(
                "the second workload started at {}, expected {}",
                after.start_value, before.final_value
            )));
        }
        Ok(())
    })
}

/// `_concoord._tcp.<domain>` SRV asked with dig from a container: `(priority, port,
/// target)` per record, sorted.
fn srv_records(c: &Cluster, server_ip: &str) -> Result<Vec<(u16, u16, String)>, E2eError> {
    let out = dig(c, server_ip, &format!("_concoord._tcp.{DOMAIN}"), "SRV")?;
    let mut records = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = match fields.as_slice() {
            [priority, _weight, port, target] => priority
                .parse()
                .ok()
                .zip(port.parse().ok())
                .map(|(p, port)| (p, port, target.to_string())),
            _ => None,
        };
        records
            .push(parsed.ok_or_else(|| {
                E2eError::Unexpected(format!("dig printed an SRV line {line:?}"))
            })?);
    }
    records.sort();
    Ok(records)
}

/// `dig @server -p DNS_PORT name type +short` in a container on the cluster's network.
fn dig(c: &Cluster, server_ip: &str, name: &str, kind: &str) -> Result<String, E2eError> {
    let image = dig_image()?;
    let at = format!("@{server_ip}");
    let port = DNS_PORT.to_string();
    let out = process::run(
        "docker",
        &[
            "run",
            "--rm",
            "--network",
            &c.network.name,
            image,
            &at,
            "-p",
            &port,
            name,
            kind,
            "+short",
            "+time=2",
            "+tries=2",
        ],
        Duration::from_secs(60),
    )?;
    if !out.success() {
        return Err(E2eError::Unexpected(format!(
            "dig {name} {kind} failed ({:?}): {}{}",
            out.code, out.stdout, out.stderr
        )));
    }
    Ok(out.stdout)
}

/// `concoord call --dns-server <dns_ip>:DNS_PORT DOMAIN ARGS...` in a container on the
/// cluster's network: its output, or the error it printed.
fn call_through_dns(c: &Cluster, dns_ip: &str, args: &[&str]) -> Result<String, E2eError> {
    let server = format!("{dns_ip}:{DNS_PORT}");
    let mut call = vec!["call", "--dns-server", &server, DOMAIN];
    call.extend_from_slice(args);
    let out = c.tool(&call)?;
    if !out.success() {
        return Err(E2eError::Check(format!(
            "concoord {} failed: {}",
            call.join(" "),
            out.stderr.trim()
        )));
    }
    Ok(out.stdout.trim().to_string())
}

#[test]
fn dig_from_another_container_finds_the_live_members() -> Result<(), E2eError> {
    scenario("dns", MEMORY, |c| {
        let dns_ip = c.replica(0).ip(&c.network.name)?;
        let leader = c.leader()?;
        let records = srv_records(c, &dns_ip)?;
        eprintln!("[e2e] dns: SRV {records:?}");
        if records.len() != c.spec.replicas {
            return Err(E2eError::Check(format!(
                "expected {} SRV records, got {records:?}",
                c.spec.replicas
            )));
        }
        for (priority, port, target) in &records {
            if *port != PORT {
                return Err(E2eError::Check(format!("SRV port {port}, expected {PORT}")));
            }
            // Each target's A record is the IP docker gave that replica's container.
            let ips = dig(c, &dns_ip, target, "A")?;
            let owner = (0..c.spec.replicas).find(|&i| {
                c.replica(i)
                    .ip(&c.network.name)
                    .is_ok_and(|ip| ips.lines().any(|l| l.trim() == ip))
            });
            let Some(owner) = owner else {
                return Err(E2eError::Check(format!(
                    "{target} resolves to {ips:?}, no replica container has that IP"
                )));
            };
            // The leader is listed first (priority 0), the others after it.
            let expected = if owner == leader { 0 } else { 10 };
            if *priority != expected {
                return Err(E2eError::Check(format!(
                    "{target} ({}) has priority {priority}, expected {expected}",
                    c.name(owner)
                )));
            }
        }
        // A client finds the group by its domain through that nameserver (over TLS, with
        // the admin token); a stranger without the CA, or with it but without a token, is
        // refused with the reason.
        call_through_dns(c, &dns_ip, &["--create", "hits", "Counter"])?;
        let plain = c.tool_without_credentials(&["call", &c.addrs(), "hits", "getvalue"])?;
        if plain.success() || !plain.stderr.contains("TLS only") {
            return Err(E2eError::Check(format!(
                "a plaintext client was not told the replicas serve TLS only: {}",
                plain.stderr.trim()
            )));
        }
        let ca_only = format!("CONCOORD_CA={}/ca.crt", concoord_e2e::pki::MOUNT);
        let mount = format!("{}:{}:ro", c.pki.dir.display(), concoord_e2e::pki::MOUNT);
        let no_token = concoord_e2e::process::run(
            "docker",
            &[
                "run",
                "--rm",
                "--network",
                &c.network.name,
                "-v",
                &mount,
                "-e",
                &ca_only,
                &c.image,
                "call",
                &c.addrs(),
                "hits",
                "increment",
            ],
            Duration::from_secs(60),
        )?;
        if no_token.success() || !no_token.stderr.contains("PermissionError") {
            return Err(E2eError::Check(format!(
                "a client without a token was not refused with PermissionError: {}",
                no_token.stderr.trim()
            )));
        }
        eprintln!(
            "[e2e] dns: strangers refused: {} / {}",
            plain.stderr.trim(),
            no_token.stderr.trim()
        );
        if call_through_dns(c, &dns_ip, &["hits", "getvalue"])? != "0" {
            return Err(E2eError::Check(
                "a refused increment changed the counter".into(),
            ));
        }
        // A replica that leaves the group leaves the SRV records.
        let gone = (0..c.spec.replicas)
            .rev()
            .find(|&i| i != 0 && i != leader)
            .unwrap_or(c.spec.replicas - 1);
        let out = c.tool(&["membership", "remove", &c.addrs(), &c.addr(gone)])?;
        if !out.success() {
            return Err(E2eError::Check(format!(
                "membership remove {} failed: {}",
                c.addr(gone),
                out.stderr.trim()
            )));
        }
        c.act("stop", gone)?;
        let started = Instant::now();
        loop {
            let records = srv_records(c, &dns_ip)?;
            if records.len() == c.spec.replicas - 1 {
                eprintln!(
                    "[e2e] dns: after removing {}: SRV {records:?}",
                    c.name(gone)
                );
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(E2eError::Check(format!(
                    "{} left, but SRV still lists {records:?}",
                    c.name(gone)
                )));
            }
            thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    })
}

/// A replica restarted into a new IP (its old one taken meanwhile) is published at the new
/// one as soon as it is back, never at the old one again, and a client that finds the group
/// through the domain reaches it; while it is down, a client still gets through.
#[test]
fn a_replica_restarted_at_a_new_ip_is_published_there_at_once() -> Result<(), E2eError> {
    scenario("new-ip", DURABLE, |c| {
        let dns_ip = c.replica(0).ip(&c.network.name)?;
        let moved = (1..c.spec.replicas)
            .find(|&i| i != c.leader().unwrap_or(0))
            .unwrap_or(1);
        let target = format!("r{}.{DOMAIN}", moved + 1);
        let old_ip = c.replica(moved).ip(&c.network.name)?;
        let published = dig(c, &dns_ip, &target, "A")?;
        if published.trim() != old_ip {
            return Err(E2eError::Check(format!(
                "{target} is {published:?} before the restart, expected {old_ip}"
            )));
        }
        c.act("stop", moved)?;
        // Someone else takes the IP while it is down, so it comes back at another one.
        let filler = docker::Container::run(
            &format!("{}-filler", c.prefix),
            &[
                "--network",
                &c.network.name,
                &c.image,
                "logdaemon",
                "-p",
                "15000",
            ],
        )?;
        let filler_ip = filler.ip(&c.network.name)?;
        if filler_ip != old_ip {
            eprintln!(
                "[e2e] new-ip: the filler got {filler_ip}, not {old_ip} (the restart may keep its IP)"
            );
        }
        // A client through the domain still gets through with a member down.
        call_through_dns(c, &dns_ip, &["--create", "moves", "Counter"])?;
        call_through_dns(c, &dns_ip, &["moves", "increment"])?;
        c.act("start", moved)?;
        let started = Instant::now();
        let new_ip = c.replica(moved).ip(&c.network.name)?;
        if new_ip == old_ip {
            return Err(E2eError::Unexpected(format!(
                "{} came back at its old IP {old_ip}: the scenario needs a new one",
                c.name(moved)
            )));
        }
        let took = loop {
            let published = dig(c, &dns_ip, &target, "A")?;
            let published = published.trim();
            if published == new_ip {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(15) {
                return Err(E2eError::Check(format!(
                    "{target} is {published:?} 15 s after the restart, expected {new_ip}"
                )));
            }
            thread::sleep(Duration::from_millis(200));
        };
        eprintln!(
            "[e2e] new-ip: {target} {old_ip} -> {new_ip}, published {took:?} after docker start"
        );
        // The nameserver's cache of the name would keep the old IP for up to 30 s; the
        // restarted replica linking to it again is what made it quick.
        if took > Duration::from_secs(10) {
            return Err(E2eError::Check(format!(
                "the new IP took {took:?} to be published"
            )));
        }
        c.wait_healthy(c.spec.replicas, Duration::from_secs(60))?;
        for _ in 0..3 {
            let published = dig(c, &dns_ip, &target, "A")?;
            if published.trim() != new_ip {
                return Err(E2eError::Check(format!(
                    "{target} went back to {published:?} after {new_ip}"
                )));
            }
        }
        let records = srv_records(c, &dns_ip)?;
        if records.len() != c.spec.replicas {
            return Err(E2eError::Check(format!(
                "SRV after the restart: {records:?}"
            )));
        }
        let value = call_through_dns(c, &dns_ip, &["moves", "getvalue"])?;
        if value != "1" {
            return Err(E2eError::Check(format!(
                "getvalue through DNS after the restart: {value}"
            )));
        }
        drop(filler);
        Ok(())
    })
}

/// Both images built in one call of build-images.sh (as users and CI build them) run their
/// binaries: the operator's once came out with a 0644 entrypoint that a node could not exec.
#[test]
fn both_images_built_together_run_their_binaries() -> Result<(), E2eError> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    docker::require_docker()?;
    let script = docker::repo_root().join("e2e/docker/build-images.sh");
    let script = script.to_string_lossy();
    let out = process::run("bash", &[&script], Duration::from_secs(1800))?;
    if !out.success() {
        return Err(E2eError::Check(format!(
            "build-images.sh failed ({:?}): {}{}",
            out.code, out.stdout, out.stderr
        )));
    }
    let version = env!("CARGO_PKG_VERSION");
    for (image, binary) in [("replica", "concoord"), ("operator", "concoord-operator")] {
        let tag = format!("concoord/{image}:{version}");
        let ran = process::run("docker", &["run", "--rm", &tag, "--version"], QUICK_RUN)?;
        if !ran.success() || !ran.stdout.contains(binary) {
            return Err(E2eError::Check(format!(
                "{tag} does not run its binary: {}{}",
                ran.stdout, ran.stderr
            )));
        }
        eprintln!("[e2e] {tag}: {}", ran.stdout.trim());
    }
    Ok(())
}

/// A `docker run` of a binary that prints and exits.
const QUICK_RUN: Duration = Duration::from_secs(60);

#[test]
fn the_replica_image_is_small_unprivileged_and_labelled() -> Result<(), E2eError> {
    docker::require_docker()?;
    let image = docker::replica_image()?;
    let field = |format: &str| -> Result<String, E2eError> {
        Ok(
            docker::docker(&["image", "inspect", "--format", format, image])?
                .trim()
                .to_string(),
        )
    };
    let size: u64 = field("{{.Size}}")?
        .parse()
        .map_err(|e| E2eError::Unexpected(format!("image size: {e}")))?;
    eprintln!("[e2e] {image}: {size} bytes");
    // 30 MB since the replica carries the Python interpreter of user-defined objects.
    if size >= 30_000_000 {
        return Err(E2eError::Check(format!(
            "{image} is {size} bytes, over 30 MB"
        )));
    }
    let user = field("{{.Config.User}}")?;
    if user != "65532:65532" {
        return Err(E2eError::Check(format!("{image} runs as {user:?}")));
    }
    let version = field("{{index .Config.Labels \"org.opencontainers.image.version\"}}")?;
    if version != env!("CARGO_PKG_VERSION") {
        return Err(E2eError::Check(format!("version label {version:?}")));
    }
    // The binary runs with nothing but itself in the image...
    let out = process::run(
        "docker",
        &["run", "--rm", image, "--version"],
        Duration::from_secs(60),
    )?;
    let expected = format!("concoord {}", env!("CARGO_PKG_VERSION"));
    if !out.success() || out.stdout.trim() != expected {
        return Err(E2eError::Check(format!(
            "--version printed {:?} {:?}",
            out.stdout, out.stderr
        )));
    }
    // ...and there is no shell to fall back on.
    let out = process::run(
        "docker",
        &[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            "true",
        ],
        Duration::from_secs(60),
    )?;
    if out.success() {
        return Err(E2eError::Check(format!("{image} has a shell")));
    }
    Ok(())
}
