//! Three (or more) real replica processes on loopback, called through the client library.

mod common;

use common::Cluster;
use concoord::client::{Client, ClientError, ClientOptions};
use concoord::command::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn int(v: i64) -> Value {
    Value::from(v)
}

fn s(v: &str) -> Value {
    Value::from(v)
}

async fn call(c: &Client, obj: &str, method: &str, args: Vec<Value>) -> Value {
    match c.call(obj, method, args).await {
        Ok(v) => v,
        Err(e) => panic!("{obj}.{method}: {e}"),
    }
}

async fn call_err(c: &Client, obj: &str, method: &str, args: Vec<Value>) -> String {
    match c.call(obj, method, args).await {
        Ok(v) => panic!("{obj}.{method} should fail, got {v}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_type_works_through_a_three_replica_cluster() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client().await;

    // The default object from -o, as in the seed's tutorial.
    call(&c, "counter", "increment", vec![]).await;
    call(&c, "counter", "increment", vec![]).await;
    assert_eq!(call(&c, "counter", "getvalue", vec![]).await, int(2));
    call(&c, "counter", "__concoordinit__", vec![]).await;
    call(&c, "counter", "increment", vec![]).await;
    assert_eq!(call(&c, "counter", "getvalue", vec![]).await, int(1));
    call(&c, "counter", "decrement", vec![]).await;
    assert_eq!(call(&c, "counter", "getvalue", vec![]).await, int(0));

    for (name, ty) in [
        ("bank", "concoord.object.bank.Bank"),
        ("log", "Log"),
        ("members", "membership"),
        ("mesh", "meshmembership"),
        ("jobs", "jobmanager"),
        ("q", "queue"),
        ("st", "stack"),
        ("kv", "dict"),
        ("lk", "lock"),
        ("rl", "rlock"),
        ("sem", "semaphore"),
        ("bsem", "boundedsemaphore"),
        ("cond", "condition"),
        ("bar", "barrier"),
    ] {
        c.create(name, ty, vec![])
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    let listed = c.list().await.unwrap();
    assert_eq!(listed.len(), 15, "{listed:?}");
    assert_eq!(listed.get("counter").map(String::as_str), Some("Counter"));

    call(&c, "bank", "open", vec![int(7)]).await;
    call(&c, "bank", "deposit", vec![int(7), int(100)]).await;
    call(&c, "bank", "debit", vec![int(7), int(30)]).await;
    assert_eq!(
        call(&c, "bank", "balance", vec![int(7)]).await,
        Value::F64(70.0)
    );
    // Too low: False, and the balance is left alone.
    assert_eq!(
        call(&c, "bank", "debit", vec![int(7), int(1000)]).await,
        Value::Boolean(false)
    );
    assert!(
        call_err(&c, "bank", "balance", vec![int(8)])
            .await
            .starts_with("KeyError")
    );

    call(&c, "log", "append", vec![s("a")]).await;
    call(&c, "log", "append", vec![s("b")]).await;
    assert_eq!(call(&c, "log", "read", vec![]).await, s("a b"));
    call(&c, "log", "write", vec![s("c")]).await;
    assert_eq!(call(&c, "log", "read", vec![]).await, s("c"));

    call(&c, "members", "add", vec![s("n1")]).await;
    call(&c, "members", "remove", vec![s("n1")]).await;
    assert!(
        call_err(&c, "members", "remove", vec![s("n1")])
            .await
            .starts_with("KeyError")
    );

    call(&c, "mesh", "add_group", vec![s("g"), int(1)]).await;
    let epoch = call(&c, "mesh", "get_group_epoch", vec![s("g")]).await;
    assert!(epoch.as_i64().is_some(), "{epoch}");

    call(&c, "jobs", "schedule", vec![s("job1")]).await;
    assert_eq!(
        call(&c, "jobs", "list_jobs", vec![]).await,
        Value::Array(vec![s("job1")])
    );
    call(&c, "jobs", "deschedule", vec![s("job1")]).await;

    call(&c, "q", "put", vec![int(1)]).await;
    assert_eq!(call(&c, "q", "qsize", vec![]).await, int(1));
    assert_eq!(call(&c, "q", "get", vec![]).await, int(1));
    assert_eq!(call(&c, "q", "empty", vec![]).await, Value::Boolean(true));
    // As in ConCoord 1.1, get() on an empty queue does not wait.
    assert!(call_err(&c, "q", "get", vec![]).await.starts_with("Empty"));

    call(&c, "st", "append", vec![int(5)]).await;
    assert_eq!(call(&c, "st", "get_size", vec![]).await, int(1));
    assert_eq!(call(&c, "st", "pop", vec![]).await, int(5));
    assert_eq!(
        call_err(&c, "st", "pop", vec![]).await,
        "IndexError: pop from empty list"
    );

    call(&c, "kv", "set", vec![s("k"), int(1)]).await;
    assert_eq!(call(&c, "kv", "get", vec![s("k")]).await, int(1));
    assert_eq!(
        call(&c, "kv", "cas", vec![s("k"), int(1), int(2)]).await,
        Value::Boolean(true)
    );
    assert_eq!(
        call(&c, "kv", "cas", vec![s("k"), int(1), int(3)]).await,
        Value::Boolean(false)
    );
    assert_eq!(
        call(&c, "kv", "keys", vec![]).await,
        Value::Array(vec![s("k")])
    );
    call(&c, "kv", "delete", vec![s("k")]).await;
    assert!(
        call_err(&c, "kv", "delete", vec![s("k")])
            .await
            .starts_with("KeyError")
    );

    // ConCoord 1.1's Lock.acquire() returns None.
    assert_eq!(call(&c, "lk", "acquire", vec![]).await, Value::Nil);
    assert_eq!(call(&c, "lk", "locked", vec![]).await, Value::Boolean(true));
    call(&c, "lk", "release", vec![]).await;
    assert!(
        call_err(&c, "lk", "release", vec![])
            .await
            .starts_with("RuntimeError")
    );

    // RLock: True, then the integer 1 when its owner acquires it again (ConCoord 1.1).
    assert_eq!(
        call(&c, "rl", "acquire", vec![]).await,
        Value::Boolean(true)
    );
    assert_eq!(call(&c, "rl", "acquire", vec![]).await, int(1));
    call(&c, "rl", "release", vec![]).await;
    call(&c, "rl", "release", vec![]).await;
    assert_eq!(
        call_err(&c, "rl", "release", vec![]).await,
        "RuntimeError: cannot release un-acquired lock"
    );

    assert_eq!(
        call(&c, "sem", "acquire", vec![]).await,
        Value::Boolean(true)
    );
    assert_eq!(
        call(&c, "sem", "acquire", vec![Value::Boolean(false)]).await,
        Value::Boolean(false)
    );
    assert_eq!(call(&c, "sem", "release", vec![]).await, Value::Nil);
    assert_eq!(c.describe("sem").await.unwrap(), "<DSemaphore object>");
    assert_eq!(
        call(&c, "sem", "__repr__", vec![]).await,
        s("<DSemaphore count=1>")
    );

    call(&c, "bsem", "acquire", vec![]).await;
    call(&c, "bsem", "release", vec![]).await;
    assert_eq!(
        call_err(&c, "bsem", "release", vec![]).await,
        "ValueError: Semaphore released too many times"
    );

    assert_eq!(call(&c, "cond", "acquire", vec![]).await, Value::Nil);
    call(&c, "cond", "notify_all", vec![]).await;
    call(&c, "cond", "notifyAll", vec![]).await;
    call(&c, "cond", "release", vec![]).await;
    assert!(
        call_err(&c, "cond", "notify", vec![])
            .await
            .starts_with("RuntimeError")
    );

    assert_eq!(call(&c, "bar", "wait", vec![]).await, Value::Nil);

    // Unknown objects and methods, and wrong arguments, are error replies.
    assert!(
        call_err(&c, "nosuch", "getvalue", vec![])
            .await
            .starts_with("NameError")
    );
    assert!(
        call_err(&c, "counter", "nosuch", vec![])
            .await
            .starts_with("AttributeError")
    );
    assert!(
        call_err(&c, "counter", "increment", vec![s("x")])
            .await
            .starts_with("TypeError")
    );
    // float("lots"), as ConCoord's Bank does it.
    assert_eq!(
        call_err(&c, "bank", "deposit", vec![int(7), s("lots")]).await,
        "ValueError: could not convert string to float: 'lots'"
    );

    c.delete("log").await.unwrap();
    assert!(
        call_err(&c, "log", "read", vec![])
            .await
            .starts_with("NameError")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_calls_park_and_are_granted_across_clients() {
    let cluster = Cluster::start(3).await;
    let a = cluster.client().await;
    let b = cluster.client().await;
    let c = cluster.client().await;
    a.create("lk", "lock", vec![]).await.unwrap();
    a.create("sem", "semaphore", vec![int(1)]).await.unwrap();
    a.create("bar", "barrier", vec![int(3)]).await.unwrap();
    a.create("cond", "condition", vec![]).await.unwrap();
    a.create("q", "queue", vec![]).await.unwrap();

    // Lock: b waits until a releases.
    call(&a, "lk", "acquire", vec![]).await;
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.call("lk", "acquire", vec![]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "acquire should park while the lock is held"
    );
    call(&a, "lk", "release", vec![]).await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    // Granted after waiting: None, like an acquire granted at once.
    assert_eq!(got.unwrap(), Value::Nil);
    assert_eq!(
        call_err(&a, "lk", "release", vec![]).await,
        "RuntimeError: cannot release un-acquired lock"
    );
    call(&b, "lk", "release", vec![]).await;

    // Semaphore: same shape.
    call(&a, "sem", "acquire", vec![]).await;
    let c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.call("sem", "acquire", vec![]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    call(&a, "sem", "release", vec![]).await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap(), Value::Boolean(true));

    // Barrier of three: nobody passes until the third arrives, then all three return None
    // (ConCoord 1.1's Barrier.wait).
    let mut waits = Vec::new();
    for cl in [&a, &b] {
        let cl = cl.clone();
        waits.push(tokio::spawn(
            async move { cl.call("bar", "wait", vec![]).await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(waits.iter().all(|w| !w.is_finished()));
    assert_eq!(call(&c, "bar", "wait", vec![]).await, Value::Nil);
    for w in waits {
        let v = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(v, Value::Nil);
    }

    // Condition: b waits, a notifies.
    call(&b, "cond", "acquire", vec![]).await;
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.call("cond", "wait", vec![]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(&a, "cond", "acquire", vec![]).await; // granted: wait released the lock
    call(&a, "cond", "notify", vec![]).await;
    assert!(
        !waiter.is_finished(),
        "the waiter needs the lock back first"
    );
    call(&a, "cond", "release", vec![]).await;
    let woke = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woke.unwrap(), Value::Nil);
    call(&b, "cond", "release", vec![]).await;

    // Queue: a blocking get (get(True)) is answered by a later put.
    let c2 = c.clone();
    let getter = tokio::spawn(async move { c2.call("q", "get", vec![Value::Boolean(true)]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!getter.is_finished());
    call(&a, "q", "put", vec![s("job")]).await;
    let got = tokio::time::timeout(Duration::from_secs(10), getter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap(), s("job"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_and_duplicates_no_acknowledged_increment() {
    let mut cluster = Cluster::start(3).await;
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let c = cluster.client().await;
        let (acked, failed, stop) = (acked.clone(), failed.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.call("counter", "increment", vec![]).await {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("increment failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.load(Ordering::Relaxed);
    assert!(before > 0, "no increment went through before the failure");
    let leader = cluster.leader().await;
    cluster.kill(leader);
    // Keep writing through the election and for a while after it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .unwrap()
            .unwrap();
    }
    let acked = acked.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    assert!(
        acked > before,
        "no increment went through after the failover"
    );
    assert_eq!(failed, 0, "calls must ride out a leader failure, not fail");
    let c = cluster.client().await;
    let value = call(&c, "counter", "getvalue", vec![]).await;
    assert_eq!(
        value,
        int(acked as i64),
        "every acknowledged increment counts exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_acquire_survives_a_leader_change() {
    let mut cluster = Cluster::start(3).await;
    let a = cluster.client().await;
    let b = cluster.client().await;
    a.create("lk", "lock", vec![]).await.unwrap();
    call(&a, "lk", "acquire", vec![]).await;
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.call("lk", "acquire", vec![]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    cluster.wait_for_view(3).await;
    assert!(!waiter.is_finished());
    call(&a, "lk", "release", vec![]).await;
    let got = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap(), Value::Nil);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_dies_holding_a_lock_loses_it_after_its_lease() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client().await;
    admin.create("lk", "lock", vec![]).await.unwrap();
    // The holder is a separate process, killed without a chance to close its session.
    let mut holder = std::process::Command::new(common::BIN)
        .args(["call", &cluster.addrs(), "lk", "acquire", "--hold"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while call(&admin, "lk", "locked", vec![]).await != Value::Boolean(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "holder never got the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Blocked until the lease (2 s in tests) runs out, then granted.
    let started = std::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(20), admin.call("lk", "acquire", vec![]))
        .await
        .expect("the dead client's lock was never released");
    assert_eq!(got.unwrap(), Value::Nil);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "released too early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_its_session_keeps_its_lock() {
    let cluster = Cluster::start(3).await;
    let a = cluster.client().await;
    let b = cluster.client().await;
    a.create("lk", "lock", vec![]).await.unwrap();
    call(&a, "lk", "acquire", vec![]).await;
    // Well past the 2 s lease: keep-alives hold the session.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        call(&b, "lk", "acquire", vec![Value::Boolean(false)]).await,
        Value::Boolean(false)
    );
    call(&a, "lk", "release", vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_from_one_client() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client().await;
    let mut calls = Vec::new();
    for _ in 0..500 {
        let c = c.clone();
        calls.push(tokio::spawn(async move {
            c.call("counter", "increment", vec![]).await
        }));
    }
    for h in calls {
        h.await.unwrap().unwrap();
    }
    assert_eq!(call(&c, "counter", "getvalue", vec![]).await, int(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_is_a_clear_error() {
    let port = common::free_ports(1)[0];
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        call_timeout: Some(Duration::from_secs(2)),
        ..ClientOptions::default()
    };
    let err = Client::connect(&format!("127.0.0.1:{port}"), opts)
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(ClientError::NoReplica { .. }) | Some(ClientError::Timeout)
        ),
        "{err:?}"
    );
}
