//! Hand-made histories, linearizable and not, for every model.

use super::*;

/// Builds histories from (client, op, invoke, return) rows.
struct H(History);

impl H {
    fn new() -> H {
        H(History::new())
    }

    fn call(mut self, client: u64, op: Op, invoke: u64, ret: u64, out: Outcome) -> H {
        let id = self.0.invoke(client, op, invoke);
        self.0.ret(id, ret, out);
        self
    }

    fn open(mut self, client: u64, op: Op, invoke: u64) -> H {
        self.0.invoke(client, op, invoke);
        self
    }

    fn ok(&self) {
        if let Err(v) = check(&self.0) {
            panic!("expected linearizable, got: {v}");
        }
    }

    fn bad(&self) -> String {
        match check(&self.0) {
            Ok(()) => panic!("expected a violation in:\n{}", self.0.describe()),
            Err(v) => v.to_string(),
        }
    }
}

fn inc() -> Op {
    Op::counter("c", CounterCall::Increment)
}
fn dec() -> Op {
    Op::counter("c", CounterCall::Decrement)
}
fn getv() -> Op {
    Op::counter("c", CounterCall::GetValue)
}
fn set(k: &str, v: i64) -> Op {
    Op::dict(
        "d",
        DictCall::Set {
            key: k.into(),
            value: v.into(),
        },
    )
}
fn get(k: &str) -> Op {
    Op::dict("d", DictCall::Get { key: k.into() })
}
fn del(k: &str) -> Op {
    Op::dict("d", DictCall::Delete { key: k.into() })
}
fn cas(k: &str, expected: Val, new: i64) -> Op {
    Op::dict(
        "d",
        DictCall::Cas {
            key: k.into(),
            expected,
            new: new.into(),
        },
    )
}
fn put(item: i64) -> Op {
    Op::queue(
        "q",
        QueueCall::Put {
            item: item.into(),
            block: true,
        },
    )
}
fn take(block: bool) -> Op {
    Op::queue("q", QueueCall::Get { block })
}
fn acquire(blocking: bool) -> Op {
    Op::lock("l", LockCall::Acquire { blocking })
}
fn release() -> Op {
    Op::lock("l", LockCall::Release)
}
fn sem_acquire(blocking: bool) -> Op {
    Op::semaphore("s", SemaphoreCall::Acquire { blocking })
}
fn sem_release() -> Op {
    Op::semaphore("s", SemaphoreCall::Release { n: 1 })
}
fn none() -> Outcome {
    Outcome::none()
}
fn int(i: i64) -> Outcome {
    Outcome::ok(i)
}
fn yes() -> Outcome {
    Outcome::ok(true)
}
fn no() -> Outcome {
    Outcome::ok(false)
}

#[test]
fn counter_sequential_and_concurrent() {
    H::new()
        .call(1, inc(), 0, 10, none())
        .call(2, inc(), 20, 30, none())
        .call(1, getv(), 40, 50, int(2))
        .ok();
    // Two increments overlap a read: it may see 0, 1 or 2 of them.
    for seen in 0..=2 {
        H::new()
            .call(1, inc(), 0, 100, none())
            .call(2, inc(), 0, 100, none())
            .call(3, getv(), 10, 90, int(seen))
            .ok();
    }
    H::new()
        .call(1, inc(), 0, 100, none())
        .call(3, getv(), 10, 90, int(2))
        .bad();
}

#[test]
fn counter_stale_read_after_increment_is_caught() {
    // The classic: a read that starts after a write finished must see it.
    let why = H::new()
        .call(1, inc(), 0, 10, none())
        .call(2, getv(), 20, 30, int(0))
        .bad();
    assert!(why.contains("c is not linearizable"), "{why}");
    assert!(why.contains("c.getvalue() -> 0"), "{why}");
    assert!(why.contains("it would return 1"), "{why}");
}

#[test]
fn counter_reads_must_not_go_backwards() {
    H::new()
        .call(1, inc(), 0, 100, none())
        .call(2, getv(), 10, 20, int(1))
        .call(3, getv(), 30, 40, int(0))
        .bad();
    H::new()
        .call(1, inc(), 0, 100, none())
        .call(1, dec(), 0, 100, none())
        .call(2, getv(), 10, 20, int(-1))
        .call(3, getv(), 30, 40, int(0))
        .ok();
}

#[test]
fn calls_that_never_returned_may_or_may_not_count() {
    for seen in 0..=1 {
        H::new()
            .open(1, inc(), 0)
            .call(2, getv(), 50, 60, int(seen))
            .ok();
    }
    H::new()
        .open(1, inc(), 0)
        .call(2, getv(), 50, 60, int(2))
        .bad();
    // Once seen, it stays: a pending call takes effect at one point only.
    H::new()
        .open(1, inc(), 0)
        .call(2, getv(), 50, 60, int(1))
        .call(2, getv(), 70, 80, int(0))
        .bad();
    // Not before it was invoked.
    H::new()
        .call(2, getv(), 0, 10, int(1))
        .open(1, inc(), 20)
        .bad();
}

#[test]
fn dict_stale_read_is_caught() {
    H::new()
        .call(1, set("x", 1), 0, 10, none())
        .call(1, set("x", 2), 20, 30, none())
        .call(2, get("x"), 40, 50, int(1))
        .bad();
    H::new()
        .call(1, set("x", 1), 0, 10, none())
        .call(1, set("x", 2), 20, 30, none())
        .call(2, get("x"), 25, 50, int(1))
        .ok();
}

#[test]
fn dict_keys_are_independent_and_cas_delete_follow_the_object() {
    H::new()
        .call(1, set("x", 1), 0, 10, none())
        .call(2, get("y"), 20, 30, Outcome::ok(Val::Nil))
        .call(2, cas("x", Val::Int(1), 5), 40, 50, yes())
        .call(3, cas("x", Val::Int(1), 6), 60, 70, no())
        .call(3, cas("z", Val::Nil, 1), 60, 70, yes())
        .call(1, del("x"), 80, 90, none())
        .call(1, del("x"), 100, 110, Outcome::err("KeyError"))
        .call(2, get("x"), 120, 130, Outcome::ok(Val::Nil))
        .ok();
    // Two compare-and-sets from the same expected value cannot both win.
    H::new()
        .call(1, set("x", 0), 0, 10, none())
        .call(2, cas("x", Val::Int(0), 1), 20, 40, yes())
        .call(3, cas("x", Val::Int(0), 2), 20, 40, yes())
        .bad();
    H::new().call(1, del("x"), 0, 10, none()).bad();
}

#[test]
fn queue_is_fifo() {
    H::new()
        .call(1, put(1), 0, 10, none())
        .call(1, put(2), 20, 30, none())
        .call(2, take(false), 40, 50, int(1))
        .call(2, take(false), 60, 70, int(2))
        .call(2, take(false), 80, 90, Outcome::err("Empty"))
        .ok();
    H::new()
        .call(1, put(1), 0, 10, none())
        .call(1, put(2), 20, 30, none())
        .call(2, take(false), 40, 50, int(2))
        .bad();
    // Concurrent puts may land in either order.
    H::new()
        .call(1, put(1), 0, 30, none())
        .call(2, put(2), 0, 30, none())
        .call(3, take(false), 40, 50, int(2))
        .call(3, take(false), 60, 70, int(1))
        .ok();
    H::new()
        .call(1, put(1), 0, 10, none())
        .call(2, take(false), 20, 30, Outcome::err("Empty"))
        .bad();
}

#[test]
fn queue_item_taken_twice_or_lost_is_caught() {
    H::new()
        .call(1, put(7), 0, 10, none())
        .call(2, take(false), 20, 30, int(7))
        .call(3, take(false), 20, 30, int(7))
        .bad();
    // An acknowledged put must be visible to a later drain.
    H::new()
        .call(1, put(7), 0, 10, none())
        .call(1, put(8), 0, 10, none())
        .call(2, take(false), 20, 30, int(8))
        .call(2, take(false), 40, 50, Outcome::err("Empty"))
        .bad();
    // Unless a get that never returned may have taken it.
    H::new()
        .call(1, put(7), 0, 10, none())
        .call(1, put(8), 0, 10, none())
        .open(3, take(true), 15)
        .call(2, take(false), 20, 30, int(8))
        .call(2, take(false), 40, 50, Outcome::err("Empty"))
        .ok();
}

#[test]
fn blocking_queue_get_returns_when_fed() {
    H::new()
        .call(1, take(true), 0, 100, int(5))
        .call(2, put(5), 50, 60, none())
        .ok();
    // Nothing was put before it returned.
    H::new()
        .call(1, take(true), 0, 40, int(5))
        .call(2, put(5), 50, 60, none())
        .bad();
}

#[test]
fn bounded_queue_put_blocks_or_raises_full() {
    let mut h = H::new();
    h.0.declare("q", ObjectSpec::Queue { maxsize: 1 });
    let put_nowait = |i: i64| {
        Op::queue(
            "q",
            QueueCall::Put {
                item: i.into(),
                block: false,
            },
        )
    };
    h.call(1, put(1), 0, 10, none())
        .call(1, put_nowait(2), 20, 30, Outcome::err("Full"))
        .call(2, put(3), 40, 200, none())
        .call(3, take(false), 100, 110, int(1))
        .call(3, take(false), 300, 310, int(3))
        .ok();
    let mut h = H::new();
    h.0.declare("q", ObjectSpec::Queue { maxsize: 1 });
    h.call(1, put(1), 0, 10, none())
        .call(2, put(3), 40, 50, none())
        .bad();
}

#[test]
fn lock_mutual_exclusion() {
    H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(false), 20, 30, no())
        .call(1, release(), 40, 50, none())
        .call(2, acquire(false), 60, 70, yes())
        .ok();
    let why = H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(true), 20, 30, none())
        .call(1, release(), 40, 50, none())
        .bad();
    assert!(why.contains("l is not linearizable"), "{why}");
    // A blocking acquire is granted at the release.
    H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(true), 5, 60, none())
        .call(1, release(), 40, 50, none())
        .ok();
    // A blocking acquire returns None (ConCoord 1.1's Lock): True is not one of its answers.
    H::new().call(1, acquire(true), 0, 10, yes()).bad();
    H::new().call(1, acquire(false), 0, 10, none()).bad();
    // Releasing someone else's lock raises.
    H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, release(), 20, 30, Outcome::err("RuntimeError"))
        .call(1, release(), 40, 50, none())
        .call(1, release(), 60, 70, Outcome::err("RuntimeError"))
        .ok();
    H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, release(), 20, 30, none())
        .bad();
}

#[test]
fn lock_is_released_when_its_session_ends() {
    let end = |h: H, client, invoke, ret| {
        let mut h = h;
        let id = h.0.invoke(client, Op::end_session(), invoke);
        h.0.ret(id, ret, none());
        h
    };
    let h = H::new().call(1, acquire(true), 0, 10, none());
    end(h, 1, 0, 30).call(2, acquire(true), 40, 50, none()).ok();
    // An explicit end that comes later than the second acquire does not help.
    let h = H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(true), 20, 30, none());
    end(h, 1, 40, 50).bad();
    // Without any record, the session may have expired silently...
    H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(true), 20, 30, none())
        .ok();
    // ...but not if it went on using the lock afterwards.
    H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(true), 20, 30, none())
        .call(1, release(), 40, 50, none())
        .bad();
    // And not when the check is told sessions never end unrecorded.
    let h = H::new()
        .call(1, acquire(true), 0, 10, none())
        .call(2, acquire(true), 20, 30, none());
    let strict = CheckOptions {
        implicit_session_ends: false,
        ..CheckOptions::default()
    };
    assert!(check_with(&h.0, &strict).is_err());
}

#[test]
fn semaphore_counts_permits() {
    let mut h = H::new();
    h.0.declare("s", ObjectSpec::Semaphore { count: 2 });
    h.call(1, sem_acquire(true), 0, 10, yes())
        .call(2, sem_acquire(true), 0, 10, yes())
        .call(3, sem_acquire(false), 20, 30, no())
        .call(3, sem_acquire(true), 25, 100, yes())
        .call(1, sem_release(), 50, 60, none())
        .ok();
    let mut h = H::new();
    h.0.declare("s", ObjectSpec::Semaphore { count: 2 });
    h.call(1, sem_acquire(true), 0, 10, yes())
        .call(2, sem_acquire(true), 0, 10, yes())
        .call(3, sem_acquire(true), 20, 30, yes())
        .call(1, sem_release(), 50, 60, none())
        .call(2, sem_release(), 50, 60, none())
        .bad();
    // A non-blocking acquire may not fail while a permit is free.
    H::new().call(1, sem_acquire(false), 0, 10, no()).bad();
}

#[test]
fn an_object_used_as_two_types_is_malformed() {
    let h = H::new()
        .call(1, Op::counter("x", CounterCall::Increment), 0, 10, none())
        .call(1, Op::lock("x", LockCall::Release), 20, 30, none());
    assert!(matches!(check(&h.0), Err(Violation::Malformed(_))));
}

#[test]
fn long_concurrent_histories_check_quickly() {
    // Five clients, each with overlapping increments, reads of the exact count between
    // rounds, and a busy queue: thousands of calls, all linearizable.
    let mut h = History::new();
    let mut t = 0;
    let mut total = 0;
    let mut item = 0;
    for _round in 0..200 {
        for c in 0..5 {
            let id = h.invoke(c, inc(), t + c);
            h.ret(id, t + 20 + c, none());
            let id = h.invoke(c, put(item), t + c);
            h.ret(id, t + 15, none());
            item += 1;
        }
        total += 5;
        for c in 0..5 {
            let id = h.invoke(c, getv(), t + 30 + c);
            h.ret(id, t + 40, int(total));
        }
        t += 50;
    }
    for i in 0..item {
        let id = h.invoke(9, take(false), t + 2 * i as u64);
        h.ret(id, t + 2 * i as u64 + 1, Outcome::Ok(Val::Int(i)));
    }
    let started = std::time::Instant::now();
    // Puts of one round are concurrent, so a strict FIFO drain in item order fits.
    check(&h).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn recorder_is_shared_between_threads() {
    let rec = std::sync::Arc::new(Recorder::new());
    let threads: Vec<_> = (0..4)
        .map(|c| {
            let rec = rec.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let id = rec.record_invoke(c, inc());
                    rec.record_return(id, none());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let id = rec.record_invoke(9, getv());
    rec.record_return(id, int(200));
    assert_eq!(rec.history().len(), 201);
    rec.check().unwrap();
    let id = rec.record_invoke(9, getv());
    rec.record_return(id, int(199));
    assert!(rec.check().is_err());
}

#[test]
fn outcomes_come_from_replies() {
    use crate::net::wire::ReplyResult;
    assert_eq!(
        Outcome::from_reply(&ReplyResult::Ok(Value::from(3))),
        Some(int(3))
    );
    assert_eq!(
        Outcome::from_reply(&ReplyResult::Err {
            kind: "KeyError".into(),
            message: "'k'".into()
        }),
        Some(Outcome::err("KeyError"))
    );
    assert_eq!(
        Outcome::from_reply(&ReplyResult::NotLeader { leader: None }),
        None
    );
    assert_eq!(Outcome::from_reply(&ReplyResult::SessionExpired), None);
    assert_eq!(
        set("k", 1).operation(),
        Operation::Call {
            object: "d".into(),
            method: "set".into(),
            args: vec![Value::from("k"), Value::from(1)],
        }
    );
}
