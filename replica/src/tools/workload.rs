//! `concoord workload` (hidden; for the container tests): closed loops of counter
//! increments, with a read now and then, from several clients for a while. Every call is
//! recorded and the history is checked for linearizability before the summary is printed
//! as one JSON line, so a test on another host (one that cannot reach the replicas
//! itself) learns how many increments were acknowledged, failed or ended unknown, the
//! counter's value before and after, and whether anything acknowledged was lost or
//! applied twice.

use crate::cli::{CliError, WorkloadArgs};
use crate::client::{Client, ClientError, ClientOptions};
use crate::linearizability::{CounterCall, ObjectSpec, Op, Outcome, Recorder, Val};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Pause after a call that failed, so an outage does not turn into a busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long the final read may keep trying (the cluster may still be electing).
const FINAL_READ_FOR: Duration = Duration::from_secs(30);

/// The JSON line the workload prints.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub object: String,
    pub clients: u32,
    pub elapsed_ms: u64,
    /// The counter's value before the first increment.
    pub start_value: i64,
    /// Increments the cluster acknowledged.
    pub acknowledged: u64,
    /// Increments the cluster refused with an error (they did not take effect).
    pub failed: u64,
    /// Increments whose outcome is unknown (timeout, no replica): maybe applied.
    pub unknown: u64,
    /// Reads that returned.
    pub reads: u64,
    /// The counter's value after every client stopped.
    pub final_value: i64,
    /// True when the recorded history is linearizable.
    pub linearizable: bool,
    /// The checker's explanation when it is not.
    pub violation: Option<String>,
    /// The first few errors the clients saw, for the test's log.
    pub errors: Vec<String>,
}

/// Counts one client loop keeps.
#[derive(Default)]
struct Tally {
    acknowledged: u64,
    failed: u64,
    unknown: u64,
    reads: u64,
    errors: Vec<String>,
}

pub async fn run(a: &WorkloadArgs) -> Result<(), CliError> {
    let summary = execute(a).await?;
    let line = serde_json::to_string(&summary)
        .map_err(|e| CliError::Failed(format!("cannot encode the summary: {e}")))?;
    println!("{line}");
    Ok(())
}

fn options(a: &WorkloadArgs) -> Result<ClientOptions, CliError> {
    Ok(ClientOptions {
        call_timeout: Some(a.call_timeout),
        failover_timeout: a.call_timeout,
        ..a.creds.client_options()?
    })
}

/// Runs the workload and checks its history.
pub async fn execute(a: &WorkloadArgs) -> Result<Summary, CliError> {
    let opts = options(a)?;
    super::bench::ensure_counter(&a.addrs, &a.object, &opts).await?;
    let rec = Arc::new(Recorder::new());
    let start_value = read_value(&a.addrs, &a.object, &opts, None).await?;
    rec.declare(
        &a.object,
        ObjectSpec::Counter {
            value: start_value,
            step: 1,
        },
    );

    let connecting = (0..a.clients).map(|_| Client::connect(&a.addrs, opts.clone()));
    let clients = futures::future::try_join_all(connecting).await?;
    let start = Instant::now();
    let deadline = start + a.duration;
    let loops: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let pace = Pace {
                read_every: a.read_every,
                think: a.think,
                deadline,
            };
            tokio::spawn(client_loop(client, rec.clone(), a.object.clone(), pace))
        })
        .collect();
    let mut total = Tally::default();
    for handle in loops {
        let t = handle
            .await
            .map_err(|e| CliError::Failed(format!("workload client task failed: {e}")))?;
        total.acknowledged += t.acknowledged;
        total.failed += t.failed;
        total.unknown += t.unknown;
        total.reads += t.reads;
        for e in t.errors {
            if total.errors.len() < 10 {
                total.errors.push(e);
            }
        }
    }
    let elapsed = start.elapsed();
    // The last read is part of the history: it is what pins lost or doubled increments.
    let final_value = read_value(&a.addrs, &a.object, &opts, Some(&rec)).await?;
    let verdict = tokio::task::spawn_blocking(move || rec.check())
        .await
        .map_err(|e| CliError::Failed(format!("the linearizability check failed: {e}")))?;
    Ok(Summary {
        object: a.object.clone(),
        clients: a.clients,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        start_value,
        acknowledged: total.acknowledged,
        failed: total.failed,
        unknown: total.unknown,
        reads: total.reads,
        final_value,
        linearizable: verdict.is_ok(),
        violation: verdict.err().map(|v| v.to_string()),
        errors: total.errors,
    })
}

/// Reads the counter with a client of its own, retrying until `FINAL_READ_FOR` is over;
/// the successful read is recorded when `rec` is given.
async fn read_value(
    addrs: &str,
    object: &str,
    opts: &ClientOptions,
    rec: Option<&Recorder>,
) -> Result<i64, CliError> {
    let until = Instant::now() + FINAL_READ_FOR;
    let mut last = String::new();
    while Instant::now() < until {
        // Its own deadlines: the final read waits out an election.
        let own = ClientOptions {
            tls: opts.tls.clone(),
            token: opts.token.clone(),
            ..ClientOptions::default()
        };
        match Client::connect(addrs, own).await {
            Ok(client) => {
                let id = rec.map(|r| {
                    r.record_invoke(
                        client.session_id(),
                        Op::counter(object, CounterCall::GetValue),
                    )
                });
                let got = client.counter(object).getvalue().await;
                let _ = client.close().await;
                match got {
                    Ok(v) => {
                        if let (Some(r), Some(id)) = (rec, id) {
                            r.record_return(id, Outcome::ok(v));
                        }
                        return Ok(v);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    Err(CliError::Failed(format!(
        "cannot read {object} within {FINAL_READ_FOR:?}: {last}"
    )))
}

/// How one client loop calls.
struct Pace {
    /// Every Nth call is a read (0: none).
    read_every: u32,
    /// Pause between calls.
    think: Duration,
    deadline: Instant,
}

async fn client_loop(client: Client, rec: Arc<Recorder>, object: String, pace: Pace) -> Tally {
    let session = client.session_id();
    let counter = client.counter(object.as_str());
    let mut t = Tally::default();
    let mut n = 0u64;
    while Instant::now() < pace.deadline {
        n += 1;
        let read = pace.read_every > 0 && n.is_multiple_of(u64::from(pace.read_every));
        let call = if read {
            CounterCall::GetValue
        } else {
            CounterCall::Increment
        };
        let id = rec.record_invoke(session, Op::counter(&object, call));
        let result = if read {
            counter.getvalue().await.map(Val::Int)
        } else {
            counter.increment().await.map(|()| Val::Nil)
        };
        match result {
            Ok(v) => {
                rec.record_return(id, Outcome::Ok(v));
                if read {
                    t.reads += 1;
                } else {
                    t.acknowledged += 1;
                }
            }
            Err(e) => {
                if let ClientError::Remote { kind, .. } = &e {
                    // The object refused it: it did not take effect.
                    rec.record_return(id, Outcome::err(kind));
                    if !read {
                        t.failed += 1;
                    }
                } else if !read {
                    // Timeout, no replica, session gone: it may or may not take effect,
                    // so the call stays open in the history.
                    t.unknown += 1;
                }
                if t.errors.len() < 10 {
                    t.errors.push(e.to_string());
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        if !pace.think.is_zero() {
            tokio::time::sleep(pace.think).await;
        }
    }
    let _ = client.close().await;
    t
}
