//! A deterministic simulator: real [`Node`](crate::node::Node)s (the real Paxos core and
//! the real objects) on a simulated network, with simulated clients that behave like the
//! client library, and faults: lost, duplicated, delayed and reordered messages, crashes
//! with and without the disk, partitions (both ways and one way), membership changes, and
//! clients cut off long enough for their sessions to expire.
//!
//! Time is virtual (milliseconds) and every random choice comes from one seeded RNG, so a
//! seed names one run, byte for byte: its trace (one line per event) is the same on every
//! rerun. At the end the network heals, a fresh client reads every object, and the run is
//! checked: the recorded history must be linearizable (see [`crate::linearizability`]),
//! no acknowledged increment may be lost, and the replicas must hold the same state.
//!
//! `SIM_SEEDS=N` runs N seeds from the tests; `SIM_SEED=S` reruns one.

mod client;
pub mod rng;
pub mod trace;
mod world;

use crate::linearizability::History;
use crate::node::NodeConfig;
use crate::paxos;
use std::fmt;

/// What strikes during the run (probabilities in per mille).
#[derive(Clone, Debug)]
pub struct Faults {
    /// A message between replicas is lost.
    pub loss: u64,
    /// A message between replicas arrives twice.
    pub duplicate: u64,
    /// Usual delay of a message is 1..=this many ms; a few take up to five times longer,
    /// which reorders them.
    pub max_delay_ms: u64,
    /// A client connection breaks (the client reconnects, possibly elsewhere).
    pub client_link_break: u64,
    /// Replicas crash and restart with their disk.
    pub crashes: bool,
    /// Replicas crash and lose their disk (they rejoin as new members).
    pub disk_loss: bool,
    /// Links are cut: partitions, one-way cuts, an isolated leader.
    pub partitions: bool,
    /// Replicas are added and removed.
    pub membership: bool,
    /// A client is cut off from every replica for a while (its session may expire).
    pub client_isolation: bool,
    /// A follower (never the leader) crashes and restarts with its disk, or is cut off
    /// from everyone for a while: what must not cost an election.
    pub follower_disruptions: bool,
    /// Time between two faults, drawn from this range.
    pub every_ms: (u64, u64),
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 30,
            duplicate: 20,
            max_delay_ms: 15,
            client_link_break: 5,
            crashes: true,
            disk_loss: true,
            partitions: true,
            membership: true,
            client_isolation: true,
            follower_disruptions: false,
            every_ms: (150, 900),
        }
    }
}

impl Faults {
    /// No faults at all: a calm network, nothing crashes.
    pub fn none() -> Faults {
        Faults {
            loss: 0,
            duplicate: 0,
            max_delay_ms: 3,
            client_link_break: 0,
            crashes: false,
            disk_loss: false,
            partitions: false,
            membership: false,
            client_isolation: false,
            follower_disruptions: false,
            every_ms: (1000, 1000),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Replicas in the group when the clients start; 0 picks 3 or 5 from the seed.
    pub replicas: usize,
    /// Addresses for replicas added later.
    pub spare_hosts: usize,
    pub clients: usize,
    /// How long clients call and faults strike once the group has formed.
    pub fault_ms: u64,
    pub faults: Faults,
    /// Replica timing and the planted-bug switches (`node.paxos.unsafe_*`).
    pub node: NodeConfig,
    /// Clients' keep-alive interval; the lease is `node.session_lease_ms`.
    pub keepalive_ms: u64,
    /// A call waits this long without a leader before its client gives up on it.
    pub failover_ms: u64,
    /// Compare the replicas' states at every decided prefix, not only at the end.
    pub check_every_slot: bool,
    /// Compare the replicas' states at all (off: only the clients' history judges, to
    /// show what the linearizability checker catches on its own).
    pub compare_replicas: bool,
    /// A replica can send to a peer outside the view it has executed once that peer's
    /// messages reached it (a runtime that links back to peers that connected to it).
    /// Keep it equal to what runtime/peers.rs does: it links back to every replica whose
    /// hello reached it (`Peers::ensure`).
    pub answer_unknown_peers: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            replicas: 0,
            spare_hosts: 2,
            clients: 5,
            fault_ms: 10_000,
            faults: Faults::default(),
            node: NodeConfig {
                paxos: paxos::Config {
                    heartbeat_ms: 25,
                    election_ms: 200,
                    retransmit_ms: 80,
                    window: 4,
                    max_batch: 8,
                    catchup_batch: 16,
                    log_keep: 20,
                    ..paxos::Config::default()
                },
                session_lease_ms: 1_500,
                snapshot_every: 40,
            },
            keepalive_ms: 300,
            failover_ms: 2_500,
            check_every_slot: true,
            compare_replicas: true,
            answer_unknown_peers: true,
        }
    }
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub messages: u64,
    pub calls: u64,
    pub returned: u64,
    pub crashes: u64,
    pub disk_losses: u64,
    pub partitions: u64,
    pub adds: u64,
    pub removes: u64,
    pub session_ends: u64,
    pub final_slot: u64,
    /// Times another replica took over as leader once the group had formed.
    pub leader_changes: u64,
}

/// A run that passed every check.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub trace: String,
    pub history: History,
    pub stats: Stats,
}

/// Which check a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The recorded history has no linearization.
    NotLinearizable,
    /// The counter's final value misses acknowledged updates.
    LostUpdate,
    /// Two replicas hold different objects after executing the same slots.
    Disagreement,
    /// The group stopped serving, or did not converge, after the faults ended.
    Liveness,
    /// A replica panicked, stopped on a fatal error, or could not recover its disk.
    Crash,
    /// The simulation itself went wrong (a runaway run).
    Harness,
}

impl FailureKind {
    /// A broken guarantee, rather than a stall or a crash.
    pub fn is_safety(self) -> bool {
        matches!(
            self,
            FailureKind::NotLinearizable | FailureKind::LostUpdate | FailureKind::Disagreement
        )
    }
}

/// A run that failed a check: which, and the story that led there.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub kind: FailureKind,
    pub what: String,
    pub trace: String,
    pub history: History,
}

/// Trace lines a failure prints (the whole trace goes to a file).
const TAIL_LINES: usize = 400;

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.trace.lines().count();
        let skip = lines.saturating_sub(TAIL_LINES);
        writeln!(
            f,
            "simulation seed {} FAILED ({:?}): {}",
            self.seed, self.kind, self.what
        )?;
        writeln!(f, "--- trace (last {} of {lines} lines) ---", lines - skip)?;
        for line in self.trace.lines().skip(skip) {
            writeln!(f, "{line}")?;
        }
        writeln!(
            f,
            "--- rerun with: SIM_SEED={} cargo test -p concoord --test sim -- --nocapture ---",
            self.seed
        )
    }
}

impl Failure {
    /// Writes the whole trace and history next to the build, and says where.
    pub fn save(&self) -> Option<std::path::PathBuf> {
        let dir = std::env::temp_dir().join("concoord-sim");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("seed-{}.txt", self.seed));
        let text = format!(
            "{}\n\n--- history ---\n{}\n--- trace ---\n{}",
            self.what,
            self.history.describe(),
            self.trace
        );
        std::fs::write(&path, text).ok()?;
        Some(path)
    }
}

/// Runs the simulation of `seed`.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<Report, Box<Failure>> {
    world::World::new(seed, cfg.clone()).run()
}

/// The seeds a test should run: `SIM_SEED=S` alone, else `SIM_SEEDS=N` (or `default`)
/// seeds starting at `first`.
pub fn seeds_from_env(first: u64, default: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default);
    (first..first + n).collect()
}
