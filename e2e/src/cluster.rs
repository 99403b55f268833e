//! A ConCoord cluster of replica containers on its own docker network, and the client
//! containers that talk to it (the host cannot resolve container names, so every client
//! runs inside the network, from the same image). The replicas serve TLS with certificates
//! of the cluster's own CA and admit only holders of its admin token, as in production.

use crate::E2eError;
use crate::docker::{self, Container, Network, Volume, unique_prefix};
use crate::pki::Pki;
use serde::Deserialize;
use std::thread;
use std::time::{Duration, Instant};

/// The port every replica listens on (each has its own container, so they can share it).
pub const PORT: u16 = 14000;
/// The port the DNS-serving replica answers on (non-root: above 1024).
pub const DNS_PORT: u16 = 5353;
/// The domain the first replica serves with -n.
pub const DOMAIN: &str = "e2e.concoord";
/// How long a tool container (status, call) may take.
const TOOL_LIMIT: Duration = Duration::from_secs(60);

/// How the cluster is started.
#[derive(Clone, Debug)]
pub struct Spec {
    pub replicas: usize,
    /// `-w` with a named volume per replica at /data.
    pub durable: bool,
}

/// What `concoord status --json` says about one replica.
#[derive(Clone, Debug, Deserialize)]
pub struct ReplicaStatus {
    pub addr: String,
    pub reachable: bool,
    #[serde(default)]
    pub replica: u64,
    #[serde(default)]
    pub is_leader: bool,
    #[serde(default)]
    pub leader: Option<u64>,
    #[serde(default)]
    pub view: u64,
    #[serde(default)]
    pub members: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub executed_upto: u64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// The JSON line `concoord workload` prints.
#[derive(Clone, Debug, Deserialize)]
pub struct Summary {
    pub clients: u32,
    pub elapsed_ms: u64,
    pub start_value: i64,
    pub acknowledged: u64,
    pub failed: u64,
    pub unknown: u64,
    pub reads: u64,
    pub final_value: i64,
    pub linearizable: bool,
    pub violation: Option<String>,
    pub errors: Vec<String>,
}

impl Summary {
    /// Nothing acknowledged was lost, nothing applied twice, and the history is
    /// linearizable: the increments applied lie between the acknowledged ones and those
    /// plus the ones whose outcome is unknown.
    pub fn check(&self) -> Result<(), E2eError> {
        if let Some(v) = &self.violation {
            return Err(E2eError::Check(format!("not linearizable: {v}")));
        }
        if !self.linearizable {
            return Err(E2eError::Check("the workload says not linearizable".into()));
        }
        if self.acknowledged == 0 {
            return Err(E2eError::Check(format!(
                "no increment was acknowledged: {self:?}"
            )));
        }
        let applied = self.final_value - self.start_value;
        let low = i64::try_from(self.acknowledged).unwrap_or(i64::MAX);
        let high = i64::try_from(self.acknowledged + self.unknown).unwrap_or(i64::MAX);
        if applied < low {
            return Err(E2eError::Check(format!(
                "acknowledged increments lost: {applied} applied, {low} acknowledged ({self:?})"
            )));
        }
        if applied > high {
            return Err(E2eError::Check(format!(
                "increments applied twice: {applied} applied, at most {high} sent ({self:?})"
            )));
        }
        if self.failed != 0 {
            return Err(E2eError::Check(format!(
                "{} increments were refused by the counter: {:?}",
                self.failed, self.errors
            )));
        }
        Ok(())
    }

    pub fn line(&self) -> String {
        format!(
            "acknowledged={} unknown={} failed={} reads={} value {} -> {} in {}ms, linearizable={}",
            self.acknowledged,
            self.unknown,
            self.failed,
            self.reads,
            self.start_value,
            self.final_value,
            self.elapsed_ms,
            self.linearizable
        )
    }
}

/// Replica containers on one network; dropping it removes the containers, then the
/// volumes, then the network.
pub struct Cluster {
    pub prefix: String,
    pub image: String,
    replicas: Vec<Container>,
    volumes: Vec<Volume>,
    pub network: Network,
    pub spec: Spec,
    /// Dropped last: the containers that mount it are gone by then.
    pub pki: Pki,
}

impl Cluster {
    /// Starts `spec.replicas` replicas: the first founds the group and serves DNS for
    /// `DOMAIN`, the others join through it with -b. Returns once all are members.
    pub fn start(label: &str, spec: Spec) -> Result<Cluster, E2eError> {
        let image = docker::replica_image()?.to_string();
        let prefix = unique_prefix(label);
        // Each replica's name, and the names its nameserver publishes (r<id>.DOMAIN), which
        // clients that find the group through SRV records check.
        let hosts: Vec<String> = (0..spec.replicas)
            .map(|i| format!("{prefix}-r{}", i + 1))
            .chain(std::iter::once(format!("*.{DOMAIN}")))
            .collect();
        let pki = Pki::make(&prefix, &image, &hosts)?;
        let network = Network::create(&format!("{prefix}-net"))?;
        let mut cluster = Cluster {
            prefix,
            image,
            replicas: Vec::new(),
            volumes: Vec::new(),
            network,
            spec: spec.clone(),
            pki,
        };
        if let Err(e) = cluster.start_replicas() {
            eprintln!("[e2e] the cluster did not come up: {e}\n{}", cluster.logs());
            return Err(e);
        }
        Ok(cluster)
    }

    fn start_replicas(&mut self) -> Result<(), E2eError> {
        for i in 0..self.spec.replicas {
            if self.spec.durable {
                let volume = Volume::create(&format!("{}-data{}", self.prefix, i + 1))?;
                self.volumes.push(volume);
            }
            let container = self.run_replica(i)?;
            self.replicas.push(container);
            if i == 0 {
                // The founder answers before anyone joins through it.
                self.wait_until(Duration::from_secs(30), "the founder answers", |s| {
                    Ok(s.iter().any(|r| r.reachable && r.is_leader))
                })?;
            }
        }
        self.wait_healthy(self.spec.replicas, Duration::from_secs(60))?;
        Ok(())
    }

    /// The container name (and host name) of replica `i` (0-based): `<prefix>-r<i+1>`.
    pub fn name(&self, i: usize) -> String {
        format!("{}-r{}", self.prefix, i + 1)
    }

    /// `name:port`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.name(i))
    }

    /// Every replica's address, comma-separated (what clients are given).
    pub fn addrs(&self) -> String {
        (0..self.spec.replicas)
            .map(|i| self.addr(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn replica(&self, i: usize) -> &Container {
        &self.replicas[i]
    }

    fn run_replica(&self, i: usize) -> Result<Container, E2eError> {
        let name = self.name(i);
        let port = PORT.to_string();
        let dns_port = DNS_PORT.to_string();
        let boot = self.addr(0);
        let mount = self
            .volumes
            .get(i)
            .map(|v| format!("{}:/data", v.name))
            .unwrap_or_default();
        let pki_mount = self.pki.replica_mount();
        let pki_flags = Pki::replica_flags();
        let mut args: Vec<&str> = vec!["--network", &self.network.name, "--hostname", &name];
        if self.spec.durable {
            args.extend(["-v", mount.as_str()]);
        }
        args.extend(pki_mount.iter().map(String::as_str));
        args.extend([
            self.image.as_str(),
            "replica",
            "-a",
            name.as_str(),
            "-p",
            port.as_str(),
        ]);
        if i == 0 {
            args.extend([
                "-n",
                DOMAIN,
                "--dns-addr",
                "0.0.0.0",
                "--dns-port",
                dns_port.as_str(),
            ]);
        } else {
            args.extend(["-b", boot.as_str()]);
        }
        if self.spec.durable {
            args.extend(["-w", "--data-dir", "/data"]);
        }
        args.extend(pki_flags.iter().map(String::as_str));
        Container::run(&name, &args)
    }

    /// Runs `concoord ARGS` in a throwaway container on the network, with the CA and the
    /// admin token.
    pub fn tool(&self, args: &[&str]) -> Result<crate::process::Output, E2eError> {
        let creds = self.pki.client_args();
        let mut run = vec!["run", "--rm", "--network", &self.network.name];
        run.extend(creds.iter().map(String::as_str));
        run.push(&self.image);
        run.extend_from_slice(args);
        crate::process::run("docker", &run, TOOL_LIMIT)
    }

    /// A tool run without the CA or the token: what a stranger on the network gets.
    pub fn tool_without_credentials(
        &self,
        args: &[&str],
    ) -> Result<crate::process::Output, E2eError> {
        let mut run = vec!["run", "--rm", "--network", &self.network.name, &self.image];
        run.extend_from_slice(args);
        crate::process::run("docker", &run, TOOL_LIMIT)
    }

    /// `concoord status --json` asked through the given replicas.
    pub fn status_via(&self, addrs: &str) -> Result<Vec<ReplicaStatus>, E2eError> {
        let out = self.tool(&["status", addrs, "--json", "--timeout", "2s"])?;
        let line = out.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).map_err(|e| {
            E2eError::Unexpected(format!(
                "status printed {:?} ({e}); stderr: {}",
                out.stdout,
                out.stderr.trim()
            ))
        })
    }

    pub fn status(&self) -> Result<Vec<ReplicaStatus>, E2eError> {
        self.status_via(&self.addrs())
    }

    /// Polls the status until `ok` says yes, for at most `limit`.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut ok: impl FnMut(&[ReplicaStatus]) -> Result<bool, E2eError>,
    ) -> Result<Vec<ReplicaStatus>, E2eError> {
        let started = Instant::now();
        let mut last = String::from("no status yet");
        while started.elapsed() < limit {
            match self.status() {
                Ok(s) => {
                    if ok(&s)? {
                        return Ok(s);
                    }
                    last = format!("{s:?}");
                }
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(300));
        }
        Err(E2eError::Timeout {
            command: format!("waiting until {what} (last status: {last})"),
            limit,
        })
    }

    /// Waits until `members` replicas are reachable members of one view with one leader,
    /// all caught up to the same executed slot.
    pub fn wait_healthy(
        &self,
        members: usize,
        limit: Duration,
    ) -> Result<Vec<ReplicaStatus>, E2eError> {
        self.wait_until(limit, &format!("{members} replicas agree"), |s| {
            let up: Vec<&ReplicaStatus> = s
                .iter()
                .filter(|r| r.reachable && r.state == "member")
                .collect();
            let leaders = up.iter().filter(|r| r.is_leader).count();
            let same_view = up.windows(2).all(|w| w[0].view == w[1].view);
            let same_slot = up
                .windows(2)
                .all(|w| w[0].executed_upto == w[1].executed_upto);
            let full = up.iter().all(|r| r.members.len() == members);
            Ok(up.len() == members && leaders == 1 && same_view && same_slot && full)
        })
    }

    /// The index of the replica that leads now.
    pub fn leader(&self) -> Result<usize, E2eError> {
        let s = self.wait_until(Duration::from_secs(30), "a leader is known", |s| {
            Ok(s.iter().any(|r| r.reachable && r.is_leader))
        })?;
        let leader = s
            .iter()
            .find(|r| r.reachable && r.is_leader)
            .map(|r| r.addr.clone())
            .unwrap_or_default();
        (0..self.spec.replicas)
            .find(|&i| self.addr(i) == leader)
            .ok_or_else(|| E2eError::Unexpected(format!("the leader {leader} is not ours")))
    }

    /// Starts `concoord workload` in a container of its own.
    pub fn start_workload(&self, clients: u32, duration: Duration) -> Result<Workload, E2eError> {
        let name = format!("{}-load{}", self.prefix, unique_suffix());
        let clients = clients.to_string();
        let duration = format!("{}ms", duration.as_millis());
        let creds = self.pki.client_args();
        let mut run = vec!["--network", self.network.name.as_str()];
        run.extend(creds.iter().map(String::as_str));
        run.push(&self.image);
        let container = Container::run(
            &name,
            &[
                run.as_slice(),
                &[
                    "workload",
                    &self.addrs(),
                    "--clients",
                    &clients,
                    "--duration",
                    &duration,
                    "--call-timeout",
                    "5s",
                    // About 150 calls a second per client: enough to keep every replica busy,
                    // few enough that the history is checked in seconds.
                    "--think",
                    "5ms",
                ],
            ]
            .concat(),
        )?;
        Ok(Workload { container })
    }

    /// `docker <verb> <replica i>` (kill, stop, start, pause, unpause).
    pub fn act(&self, verb: &str, i: usize) -> Result<(), E2eError> {
        let name = self.name(i);
        match verb {
            // Give a graceful stop a few seconds, as an orchestrator would.
            "stop" => docker::docker(&["stop", "-t", "10", &name])?,
            _ => docker::docker(&[verb, &name])?,
        };
        eprintln!("[e2e]   docker {verb} {name}");
        Ok(())
    }

    /// Cuts replica `i` off the network (`docker network disconnect`).
    pub fn disconnect(&self, i: usize) -> Result<(), E2eError> {
        docker::docker(&["network", "disconnect", &self.network.name, &self.name(i)])?;
        eprintln!("[e2e]   disconnected {}", self.name(i));
        Ok(())
    }

    /// Puts replica `i` back on the network, under its name.
    pub fn reconnect(&self, i: usize) -> Result<(), E2eError> {
        docker::docker(&["network", "connect", &self.network.name, &self.name(i)])?;
        eprintln!("[e2e]   reconnected {}", self.name(i));
        Ok(())
    }

    /// Reads the counter with `concoord call`.
    pub fn counter_value(&self) -> Result<i64, E2eError> {
        let out = self.tool(&["call", &self.addrs(), "counter", "getvalue"])?;
        out.stdout.trim().parse().map_err(|_| {
            E2eError::Unexpected(format!(
                "counter getvalue printed {:?}; stderr: {}",
                out.stdout,
                out.stderr.trim()
            ))
        })
    }

    /// The last lines each replica logged, for a failure report.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for r in &self.replicas {
            text.push_str(&format!("---- {} ----\n{}\n", r.name, r.tail(40)));
        }
        text
    }
}

fn unique_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A workload running in its own container.
pub struct Workload {
    container: Container,
}

impl Workload {
    /// Waits for the workload to end and returns its summary.
    pub fn finish(self, limit: Duration) -> Result<Summary, E2eError> {
        let code = self.container.wait(limit)?;
        let stdout = self.container.stdout()?;
        if code != 0 {
            return Err(E2eError::Unexpected(format!(
                "workload exited with {code}: {}",
                self.container.tail(20)
            )));
        }
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .map_err(|e| E2eError::Unexpected(format!("workload printed {stdout:?}: {e}")))
    }
}
