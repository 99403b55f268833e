//! The deterministic simulator over many seeds: real nodes, simulated network, clients and
//! faults; every run's history must be linearizable and its replicas must agree.
//!
//! `SIM_SEEDS=N` runs N seeds (default below), `SIM_SEED=S` reruns one; a failure prints
//! the seed and the trace, and writes the whole story to a file. `SIM_SEED=S
//! SIM_TRACE=FILE` writes the trace of a run that passes; `SIM_SURVEY=1` lists every failing
//! seed of a batch.

use concoord::sim::{self, Faults, SimConfig};
use std::sync::Mutex;
use std::time::Instant;

/// Seeds run by default: together well under a minute in a debug build on two cores.
const DEFAULT_SEEDS: u64 = 200;

/// Runs `seeds` on two threads; returns the failures (only safety ones if `safety_only`),
/// in seed order.
fn run_all(
    seeds: &[u64],
    cfg: &SimConfig,
    stop_at_first: bool,
    safety_only: bool,
) -> Vec<sim::Failure> {
    let next = Mutex::new(0usize);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if stop_at_first && !failures.lock().unwrap().is_empty() {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let Some(&seed) = seeds.get(i) else {
                        return;
                    };
                    if let Err(f) = sim::run(seed, cfg)
                        && (!safety_only || f.kind.is_safety())
                    {
                        failures.lock().unwrap().push(*f);
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|f| f.seed);
    failures
}

/// Every seed must pass every check; `SIM_SAFETY_ONLY=1` lets stalls pass (only broken
/// guarantees fail the test), for a core with a known liveness bug.
#[test]
fn sim_seeds_are_linearizable_and_replicas_agree() {
    let seeds = sim::seeds_from_env(1, DEFAULT_SEEDS);
    let safety_only = std::env::var("SIM_SAFETY_ONLY").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let failures = run_all(&seeds, &SimConfig::default(), false, safety_only);
    eprintln!(
        "simulated {} seeds in {:.1?}: {} failed",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    if let Some(first) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
        eprintln!("{first}");
        if let Some(path) = first.save() {
            eprintln!(
                "full trace and history of seed {}: {}",
                first.seed,
                path.display()
            );
        }
        panic!("failing seeds: {seeds:?}");
    }
}

/// `SIM_SEED=S SIM_TRACE=FILE` writes the trace of seed S to FILE, pass or fail.
#[test]
fn trace_one_seed() {
    let (Ok(seed), Ok(path)) = (std::env::var("SIM_SEED"), std::env::var("SIM_TRACE")) else {
        return;
    };
    let seed: u64 = seed.trim().parse().expect("SIM_SEED is a number");
    let trace = match sim::run(seed, &survey_config()) {
        Ok(r) => r.trace,
        Err(f) => format!("{f}\n{}", f.trace),
    };
    std::fs::write(&path, trace).expect("cannot write SIM_TRACE");
}

#[test]
fn a_seed_reproduces_its_run_byte_for_byte() {
    let cfg = SimConfig::default();
    let seed = sim::seeds_from_env(7, 1)[0];
    let trace = |seed| match sim::run(seed, &cfg) {
        Ok(r) => r.trace,
        Err(f) => f.trace,
    };
    let (a, b) = (trace(seed), trace(seed));
    assert!(a.lines().count() > 1_000, "a run should do something:\n{a}");
    assert!(a == b, "seed {seed} gave two different traces");
    assert_ne!(a, trace(seed + 1), "two seeds gave the same run");
}

#[test]
fn a_calm_run_answers_every_call() {
    let cfg = SimConfig {
        faults: Faults::none(),
        ..SimConfig::default()
    };
    let report = sim::run(3, &cfg).unwrap_or_else(|f| panic!("{f}"));
    let s = &report.stats;
    assert!(s.calls > 200, "{s:?}");
    // Only blocking calls still parked at the end may be unanswered.
    assert!(s.calls - s.returned < 10, "{s:?}");
    assert_eq!(s.crashes + s.partitions + s.adds + s.removes, 0, "{s:?}");
}

/// The workload includes an object of a user-defined type (the seed's TenCounter, run by
/// every replica's sandboxed interpreter): its calls return, its reads are multiples of
/// ten, and the checker accepted them against the TenCounter model (a counter moving by
/// ten), since the run passed.
#[test]
fn a_user_defined_type_is_checked_like_the_built_ins() {
    use concoord::linearizability::{Call, CounterCall, Outcome, Val};
    let report = sim::run(5, &SimConfig::default()).unwrap_or_else(|f| panic!("{f}"));
    let ten: Vec<_> = report
        .history
        .entries()
        .iter()
        .filter(|e| e.op.object == "tencounter")
        .collect();
    let increments = ten
        .iter()
        .filter(|e| matches!(e.op.call, Call::Counter(CounterCall::Increment)) && e.ret.is_some())
        .count();
    let reads: Vec<i64> = ten
        .iter()
        .filter_map(|e| match &e.ret {
            Some((_, Outcome::Ok(Val::Int(v)))) => Some(*v),
            _ => None,
        })
        .collect();
    assert!(increments > 5, "{increments} increments returned");
    assert!(
        !reads.is_empty() && reads.iter().all(|v| v % 10 == 0),
        "{reads:?}"
    );
    assert!(reads.iter().any(|v| *v != 0), "{reads:?}");
}

/// Followers that restart (with their disk) or are cut off and healed, again and again,
/// while the leader stays healthy: no seed may see another replica take over (pre-vote),
/// and every run passes every check. Without pre-vote the same runs do change leaders.
#[test]
fn restarted_and_healed_followers_never_depose_a_healthy_leader() {
    let cfg = |pre_vote: bool| {
        let mut cfg = SimConfig {
            replicas: 3,
            faults: Faults {
                follower_disruptions: true,
                every_ms: (300, 1_200),
                ..Faults::none()
            },
            ..SimConfig::default()
        };
        cfg.node.paxos.pre_vote = pre_vote;
        cfg
    };
    let mut disrupted = 0;
    let mut changes_without = 0;
    for seed in 1..=20 {
        let report = sim::run(seed, &cfg(true)).unwrap_or_else(|f| panic!("{f}"));
        let s = &report.stats;
        assert_eq!(s.leader_changes, 0, "seed {seed}: {s:?}");
        disrupted += s.crashes + s.partitions;
        if let Ok(r) = sim::run(seed, &cfg(false)) {
            changes_without += r.stats.leader_changes;
        }
    }
    eprintln!(
        "20 seeds, {disrupted} follower restarts and isolations: 0 leader changes with pre-vote, \
         {changes_without} without"
    );
    assert!(
        disrupted >= 100,
        "too few disruptions to mean anything: {disrupted}"
    );
    assert!(
        changes_without > 0,
        "without pre-vote the same disruptions should depose leaders"
    );
}

/// The checks must catch a broken core: with a planted bug, some seed must break a
/// safety check (a stall or a crash does not count: the checker has to see it).
fn planted_bug_is_caught(name: &str, plant: impl Fn(&mut SimConfig)) {
    let mut cfg = SimConfig::default();
    plant(&mut cfg);
    let seeds: Vec<u64> = (1000..1300).collect();
    let started = Instant::now();
    let failures = run_all(&seeds, &cfg, true, true);
    let Some(f) = failures.first() else {
        panic!(
            "the planted bug ({name}) went unnoticed through {} seeds",
            seeds.len()
        );
    };
    let what: Vec<&str> = f.what.lines().take(30).collect();
    eprintln!(
        "planted bug ({name}) caught by seed {} after {:.1?}: {:?}:\n{}",
        f.seed,
        started.elapsed(),
        f.kind,
        what.join("\n")
    );
}

#[test]
fn planted_bug_accepting_lower_ballots_is_caught() {
    planted_bug_is_caught("acceptors take lower ballots", |cfg| {
        cfg.node.paxos.unsafe_accept_lower_ballots = true;
    });
}

#[test]
fn planted_bug_is_caught_by_the_history_alone() {
    planted_bug_is_caught(
        "acceptors take lower ballots; replicas not compared",
        |cfg| {
            cfg.node.paxos.unsafe_accept_lower_ballots = true;
            cfg.compare_replicas = false;
        },
    );
    planted_bug_is_caught("leaders skip phase 1; replicas not compared", |cfg| {
        cfg.node.paxos.unsafe_skip_phase1 = true;
        cfg.compare_replicas = false;
    });
}

#[test]
fn planted_bug_skipping_phase_one_is_caught() {
    planted_bug_is_caught("leaders skip phase 1", |cfg| {
        cfg.node.paxos.unsafe_skip_phase1 = true;
    });
}

/// The default configuration, with `SIM_FAULT_MS` and `SIM_CLIENTS` overrides.
fn survey_config() -> SimConfig {
    let mut cfg = SimConfig::default();
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(ms) = env("SIM_FAULT_MS") {
        cfg.fault_ms = ms;
    }
    if let Some(n) = env("SIM_CLIENTS") {
        cfg.clients = n as usize;
    }
    cfg
}

/// Development aid: `SIM_SURVEY=1` prints one line per failing seed and what the
/// passing runs did in total.
#[test]
fn survey() {
    if std::env::var("SIM_SURVEY").is_err() {
        return;
    }
    let seeds = sim::seeds_from_env(1, DEFAULT_SEEDS);
    let started = Instant::now();
    let total = Mutex::new(sim::Stats::default());
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(&seed) = seeds.get(i) else {
                        return;
                    };
                    match sim::run(seed, &survey_config()) {
                        Ok(r) => {
                            let mut t = total.lock().unwrap();
                            let s = r.stats;
                            t.events += s.events;
                            t.messages += s.messages;
                            t.calls += s.calls;
                            t.returned += s.returned;
                            t.crashes += s.crashes;
                            t.disk_losses += s.disk_losses;
                            t.partitions += s.partitions;
                            t.adds += s.adds;
                            t.removes += s.removes;
                            t.session_ends += s.session_ends;
                            t.final_slot += s.final_slot;
                        }
                        Err(f) => failures.lock().unwrap().push(*f),
                    }
                }
            });
        }
    });
    eprintln!("passing runs in total: {:?}", total.into_inner().unwrap());
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|f| f.seed);
    for f in &failures {
        let _ = f.save();
        eprintln!(
            "seed {}: {:?}: {}",
            f.seed,
            f.kind,
            f.what.lines().next().unwrap_or("")
        );
    }
    eprintln!(
        "{} seeds, {} failed, {:.1?}",
        seeds.len(),
        failures.len(),
        started.elapsed()
    );
}
