//! `concoord bench`: closed-loop increments from 1, 8, 64... independent clients (each with
//! its own session and connection), reporting throughput and latency percentiles.

use crate::cli::{BenchArgs, CliError};
use crate::client::{Client, ClientOptions};
use hdrhistogram::Histogram;
use std::time::Duration;
use tokio::time::Instant;

/// Latencies are recorded in microseconds up to this (longer ones are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Pause after a failed call, so an outage does not turn into a busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The outcome of one round.
#[derive(Debug)]
pub struct Round {
    pub clients: u32,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub errors: u64,
}

impl Round {
    pub fn line(&self) -> String {
        let ops = self.latency_us.len();
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "clients={:<5} ops={:<9} ops/s={:<10.1} p50={:.3}ms p99={:.3}ms max={:.3}ms errors={}",
            self.clients,
            ops,
            ops as f64 / secs,
            ms(0.5),
            ms(0.99),
            self.latency_us.max() as f64 / 1000.0,
            self.errors
        )
    }
}

fn histogram() -> Result<Histogram<u64>, CliError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| CliError::Failed(format!("cannot make a histogram: {e}")))
}

/// Whether `--object` names a user type (module.Class or FILE.py:Class) rather than an
/// object.
fn is_type_spec(object: &str) -> bool {
    object.contains(':') || object.contains('.')
}

pub async fn run(a: &BenchArgs) -> Result<(), CliError> {
    let opts = a.creds.client_options()?;
    if is_type_spec(&a.object) {
        return compare_with_builtin(a, &opts).await;
    }
    ensure_counter(&a.addrs, &a.object, &opts).await?;
    println!(
        "bench: {}.increment() on {} for {:?} per round",
        a.object, a.addrs, a.duration
    );
    for &clients in &a.clients {
        let round = run_round(&a.addrs, &a.object, clients, a.duration, &opts).await?;
        println!("{}", round.line());
    }
    Ok(())
}

/// `--object module.Class`: loads the type (unless the group has it), creates its object,
/// and runs every round twice, on the built-in Counter and on the user object, so the two
/// are compared within one run.
async fn compare_with_builtin(a: &BenchArgs, opts: &ClientOptions) -> Result<(), CliError> {
    let found = crate::object::source::find(&a.object, &a.object_path)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let user_object = format!("bench-{}", found.class.to_lowercase());
    let client = Client::connect(&a.addrs, opts.clone()).await?;
    let prepared = async {
        let types = client.list_types().await?;
        if !types.iter().any(|t| t.name == found.dotted_name()) {
            client
                .define_type(&found.module, &found.class, &found.source, false)
                .await?;
        }
        if !client.list().await?.contains_key(&user_object) {
            client
                .create(&user_object, &found.dotted_name(), Vec::new())
                .await?;
        }
        Ok::<_, CliError>(())
    }
    .await;
    let _ = client.close().await;
    prepared?;
    ensure_counter(&a.addrs, "counter", opts).await?;
    println!(
        "bench: counter.increment() (built-in Counter) against {user_object}.increment() ({}) on {} for {:?} per round",
        found.dotted_name(),
        a.addrs,
        a.duration
    );
    for &clients in &a.clients {
        let builtin = run_round(&a.addrs, "counter", clients, a.duration, opts).await?;
        println!("Counter     {}", builtin.line());
        let user = run_round(&a.addrs, &user_object, clients, a.duration, opts).await?;
        println!("{:<11} {}", found.class, user.line());
    }
    Ok(())
}

/// Creates the counter unless it exists.
pub(crate) async fn ensure_counter(
    addrs: &str,
    object: &str,
    opts: &ClientOptions,
) -> Result<(), CliError> {
    let client = Client::connect(addrs, opts.clone()).await?;
    let result = async {
        if !client.list().await?.contains_key(object) {
            client.create(object, "Counter", Vec::new()).await?;
        }
        Ok::<_, CliError>(())
    }
    .await;
    let _ = client.close().await;
    result
}

/// Runs `clients` closed loops of increments for `duration`.
pub async fn run_round(
    addrs: &str,
    object: &str,
    clients: u32,
    duration: Duration,
    opts: &ClientOptions,
) -> Result<Round, CliError> {
    let connecting = (0..clients).map(|_| Client::connect(addrs, opts.clone()));
    let connected = futures::future::try_join_all(connecting).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let loops: Vec<_> = connected
        .into_iter()
        .map(|client| {
            let object = object.to_string();
            tokio::spawn(async move {
                let mut hist = histogram()?;
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match client.call(&object, "increment", Vec::new()).await {
                        Ok(_) => {
                            let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                            hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                        }
                        Err(e) => {
                            errors += 1;
                            tracing::warn!(error = %e, "increment failed");
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                let _ = client.close().await;
                Ok::<_, CliError>((hist, errors))
            })
        })
        .collect();
    let mut total = histogram()?;
    let mut errors = 0;
    for handle in loops {
        let (hist, errs) = handle
            .await
            .map_err(|e| CliError::Failed(format!("bench client task failed: {e}")))??;
        total
            .add(&hist)
            .map_err(|e| CliError::Failed(format!("cannot merge histograms: {e}")))?;
        errors += errs;
    }
    Ok(Round {
        clients,
        elapsed: start.elapsed(),
        latency_us: total,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let mut h = histogram().unwrap();
        for us in [1000, 1000, 2000, 50_000] {
            h.record(us).unwrap();
        }
        let line = Round {
            clients: 8,
            elapsed: Duration::from_secs(2),
            latency_us: h,
            errors: 1,
        }
        .line();
        assert!(line.starts_with("clients=8 "), "{line}");
        assert!(line.contains("ops=4 "), "{line}");
        assert!(line.contains("ops/s=2.0 "), "{line}");
        assert!(line.contains("p50=1.000ms"), "{line}");
        assert!(
            line.contains("max=50.") && line.ends_with("errors=1"),
            "{line}"
        );
    }
}
