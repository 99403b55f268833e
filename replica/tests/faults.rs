//! Faults on real processes (ToyFramework's profiler API): five replica processes on
//! loopback with their disks, concurrent clients, and a harness that kills and restarts
//! replicas and cuts links between them for a bounded time. The recorded history must be
//! linearizable and every acknowledged write present afterwards.

mod common;

use common::{Cluster, Replica, free_ports, inject, spawn_replica};
use concoord::client::{Client, ClientError, ClientOptions};
use concoord::command::Value;
use concoord::linearizability::{CounterCall, DictCall, ObjectSpec, Op, Outcome, Recorder, Val};
use concoord::net::wire::Fault;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const REPLICAS: usize = 5;
/// How long faults are injected; the whole test stays well under a minute.
const CHAOS: Duration = Duration::from_secs(15);

struct Chaos {
    cluster: Cluster,
    dirs: Vec<PathBuf>,
    ids: Vec<u64>,
}

impl Chaos {
    fn args(&self, i: usize) -> Vec<String> {
        vec![
            "--data-dir".into(),
            self.dirs[i].to_string_lossy().to_string(),
            "--allow-fault-injection".into(),
        ]
    }

    fn spawn(&self, i: usize, boot: Option<String>) -> std::process::Child {
        let args = self.args(i);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_replica(self.cluster.replicas[i].port, boot, &refs)
    }

    fn alive(&self) -> Vec<usize> {
        (0..REPLICAS)
            .filter(|i| self.cluster.replicas[*i].child.is_some())
            .collect()
    }

    /// Cuts the link between replicas `a` and `b`, both ways.
    async fn cut(&self, a: usize, b: usize) {
        let (ida, idb) = (self.ids[a], self.ids[b]);
        let _ = inject(
            &self.cluster.replicas[a].addr(),
            Fault::CutLink { peer: idb },
        )
        .await;
        let _ = inject(
            &self.cluster.replicas[b].addr(),
            Fault::CutLink { peer: ida },
        )
        .await;
    }

    async fn heal(&self) {
        for i in self.alive() {
            let _ = inject(&self.cluster.replicas[i].addr(), Fault::RestoreAll).await;
        }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        for i in 0..self.cluster.replicas.len() {
            self.cluster.kill(i);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A small deterministic generator for the test's own choices (seed printed on failure).
struct Dice(u64);
impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn outcome_of(result: &Result<Value, ClientError>) -> Option<Outcome> {
    match result {
        Ok(v) => Some(Outcome::Ok(Val::from_value(v))),
        Err(ClientError::Remote { kind, .. }) => Some(Outcome::Err(kind.clone())),
        // Timed out, no replica, session gone: the call may or may not have taken effect.
        Err(_) => None,
    }
}

async fn client_loop(
    c: Client,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    worker: u64,
) -> (u64, u64) {
    let session = c.session_id();
    let mut dice = Dice(worker * 7919 + 1);
    let (mut acked, mut unknown) = (0u64, 0u64);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = ["a", "b", "c"][dice.below(3)];
        let (op, object, method, args) = match dice.below(6) {
            0 | 1 => (
                Op::counter("counter", CounterCall::Increment),
                "counter",
                "increment",
                vec![],
            ),
            2 => (
                Op::counter("counter", CounterCall::GetValue),
                "counter",
                "getvalue",
                vec![],
            ),
            3 => {
                let v = format!("w{worker}-{n}");
                (
                    Op::dict(
                        "kv",
                        DictCall::Set {
                            key: key.into(),
                            value: Val::from(v.as_str()),
                        },
                    ),
                    "kv",
                    "set",
                    vec![Value::from(key), Value::from(v.as_str())],
                )
            }
            4 => (
                Op::dict("kv", DictCall::Get { key: key.into() }),
                "kv",
                "get",
                vec![Value::from(key)],
            ),
            _ => {
                let v = format!("c{worker}-{n}");
                (
                    Op::dict(
                        "kv",
                        DictCall::Cas {
                            key: key.into(),
                            expected: Val::Nil,
                            new: Val::from(v.as_str()),
                        },
                    ),
                    "kv",
                    "cas",
                    vec![Value::from(key), Value::Nil, Value::from(v.as_str())],
                )
            }
        };
        let is_increment = method == "increment";
        let id = rec.record_invoke(session, op);
        let result = c.call(object, method, args).await;
        match outcome_of(&result) {
            Some(o) => {
                rec.record_return(id, o);
                if is_increment && result.is_ok() {
                    acked += 1;
                }
            }
            None => {
                if is_increment {
                    unknown += 1;
                }
                eprintln!("worker {worker}: {object}.{method} ended unknown: {result:?}");
            }
        }
    }
    (acked, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_under_kills_restarts_and_cut_links_stay_linearizable() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("fault seed {seed} (rerun with FAULT_SEED={seed})");
    let ports = free_ports(REPLICAS);
    let mut chaos = Chaos {
        cluster: Cluster {
            replicas: ports
                .iter()
                .map(|&port| Replica { port, child: None })
                .collect(),
        },
        dirs: (0..REPLICAS)
            .map(|i| {
                std::env::temp_dir()
                    .join(format!("concoord-faults-{}-{seed}-{i}", std::process::id()))
            })
            .collect(),
        ids: Vec::new(),
    };
    for i in 0..REPLICAS {
        let boot = (i > 0).then(|| format!("127.0.0.1:{}", ports[0]));
        let child = chaos.spawn(i, boot);
        chaos.cluster.replicas[i].child = Some(child);
        chaos.cluster.wait_for_view(i + 1).await;
    }
    for i in 0..REPLICAS {
        let s = chaos.cluster.status_of(i).await.expect("status");
        chaos.ids.push(s.replica);
    }
    let admin = chaos.cluster.client().await;
    admin.create("kv", "dict", vec![]).await.unwrap();

    let rec = Arc::new(Recorder::new());
    rec.declare("counter", ObjectSpec::Counter { value: 0, step: 1 });
    rec.declare("kv", ObjectSpec::Dict);
    let stop = Arc::new(AtomicBool::new(false));
    let opts = ClientOptions {
        call_timeout: Some(Duration::from_secs(8)),
        failover_timeout: Duration::from_secs(8),
        ..ClientOptions::default()
    };
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let c = Client::connect(&chaos.cluster.addrs(), opts.clone())
            .await
            .unwrap();
        workers.push(tokio::spawn(client_loop(
            c,
            rec.clone(),
            stop.clone(),
            w + 1,
        )));
    }

    // Faults: never more than two replicas down, so a majority of five can exist.
    // xorshift needs a non-zero state; the seed as printed reruns the same choices.
    let mut dice = Dice(seed | 1);
    let started = Instant::now();
    let mut log = Vec::new();
    while started.elapsed() < CHAOS {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let alive = chaos.alive();
        match dice.below(4) {
            0 if alive.len() > 3 => {
                let victim = alive[dice.below(alive.len())];
                log.push(format!("{:?} kill replica {victim}", started.elapsed()));
                chaos.cluster.kill(victim);
            }
            1 if alive.len() < REPLICAS => {
                let dead: Vec<usize> = (0..REPLICAS).filter(|i| !alive.contains(i)).collect();
                let back = dead[dice.below(dead.len())];
                log.push(format!("{:?} restart replica {back}", started.elapsed()));
                let child = chaos.spawn(back, None);
                chaos.cluster.replicas[back].child = Some(child);
            }
            2 if alive.len() >= 2 => {
                let a = alive[dice.below(alive.len())];
                let b = alive[dice.below(alive.len())];
                if a != b {
                    log.push(format!("{:?} cut link {a} <-> {b}", started.elapsed()));
                    chaos.cut(a, b).await;
                }
            }
            _ => {
                log.push(format!("{:?} heal all links", started.elapsed()));
                chaos.heal().await;
            }
        }
    }
    // Heal everything and bring every replica back.
    for i in 0..REPLICAS {
        if chaos.cluster.replicas[i].child.is_none() {
            let child = chaos.spawn(i, None);
            chaos.cluster.replicas[i].child = Some(child);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    chaos.heal().await;
    chaos.cluster.wait_for_view(REPLICAS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut unknown) = (0, 0);
    for w in workers {
        let (a, u) = tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("a client got stuck after healing")
            .unwrap();
        acked += a;
        unknown += u;
    }
    eprintln!("faults: {}", log.join("; "));

    // Every acknowledged increment is there, none twice.
    let c = chaos.cluster.client().await;
    let value = c
        .call("counter", "getvalue", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap() as u64;
    eprintln!("acknowledged increments {acked}, unknown {unknown}, counter {value}");
    assert!(
        acked > 20,
        "too little got through to mean anything: {acked}"
    );
    assert!(
        value >= acked && value <= acked + unknown,
        "counter {value} outside [acked {acked}, acked + unknown {}] (seed {seed})",
        acked + unknown
    );
    let history = rec.history();
    eprintln!("checking {} calls", history.len());
    if let Err(v) = rec.check() {
        panic!(
            "not linearizable (seed {seed}): {v}\nfaults: {}",
            log.join("; ")
        );
    }
}
