//! The history recorder as the real-process tests use it: shared by tokio tasks, stamped
//! with `Instant`s, checked at the end.

use concoord::linearizability::{
    CounterCall, DictCall, ObjectSpec, Op, Outcome, Recorder, Val, Violation,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A "replicated" counter: `stale` reads a second copy that lags behind the first.
#[derive(Default)]
struct Counter {
    primary: Mutex<i64>,
    lagging: Mutex<i64>,
}

impl Counter {
    async fn increment(&self) {
        *self.primary.lock().await += 1;
    }

    async fn read(&self, stale: bool) -> i64 {
        if stale {
            *self.lagging.lock().await
        } else {
            *self.primary.lock().await
        }
    }

    async fn sync(&self) {
        let v = *self.primary.lock().await;
        *self.lagging.lock().await = v;
    }
}

/// Four tasks increment and read concurrently; `stale_reads` makes some reads go to the
/// lagging copy.
async fn counter_history(stale_reads: bool) -> Recorder {
    let rec = Arc::new(Recorder::new());
    rec.declare("counter", ObjectSpec::Counter { value: 0, step: 1 });
    let counter = Arc::new(Counter::default());
    let tasks: Vec<_> = (0..4u64)
        .map(|client| {
            let (rec, counter) = (rec.clone(), counter.clone());
            tokio::spawn(async move {
                for i in 0..30u64 {
                    let op = Op::counter("counter", CounterCall::Increment);
                    let id = rec.record_invoke(client, op);
                    counter.increment().await;
                    rec.record_return(id, Outcome::none());
                    let op = Op::counter("counter", CounterCall::GetValue);
                    let id = rec.record_invoke(client, op);
                    let v = counter.read(stale_reads && i % 7 == client).await;
                    rec.record_return(id, Outcome::ok(v));
                    if i % 10 == 9 {
                        counter.sync().await;
                    }
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(rec).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_counter_passes() {
    let rec = counter_history(false).await;
    assert_eq!(rec.history().len(), 240);
    rec.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_are_reported_with_an_explanation() {
    let rec = counter_history(true).await;
    match rec.check() {
        Err(Violation::NotLinearizable {
            partition,
            explanation,
        }) => {
            assert_eq!(partition, "counter");
            assert!(explanation.contains("counter.getvalue()"), "{explanation}");
            assert!(explanation.contains("it would return"), "{explanation}");
        }
        other => panic!("stale reads went unnoticed: {other:?}"),
    }
}

/// Calls whose outcome never arrived (a timeout, a lost connection) are simply never
/// returned; the checker lets them take effect or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_calls_may_have_happened() {
    let rec = Arc::new(Recorder::new());
    let dict = Arc::new(Mutex::new(BTreeMap::<String, i64>::new()));
    let set = |value: i64| {
        Op::dict(
            "dict",
            DictCall::Set {
                key: "k".into(),
                value: Val::Int(value),
            },
        )
    };
    // Equal timestamps count as concurrent: keep these calls apart.
    let pause = || tokio::time::sleep(Duration::from_millis(2));
    // A write whose reply is lost: it happened, but the client never learns it.
    rec.record_invoke(1, set(1));
    dict.lock().await.insert("k".into(), 1);
    pause().await;
    let get = Op::dict("dict", DictCall::Get { key: "k".into() });
    let id = rec.record_invoke(2, get.clone());
    let v = dict.lock().await.get("k").copied();
    rec.record_return(id, Outcome::Ok(v.map_or(Val::Nil, Val::Int)));
    rec.check().unwrap();
    pause().await;
    // A write that returned must be seen by a read that starts afterwards (the lost
    // write took effect once, before the first read).
    let id = rec.record_invoke(1, set(2));
    rec.record_return(id, Outcome::none());
    pause().await;
    let id = rec.record_invoke(2, get);
    rec.record_return(id, Outcome::ok(1));
    let why = rec.check().unwrap_err().to_string();
    assert!(why.contains("dict[\"k\"] is not linearizable"), "{why}");
}
