//! `Condition()`: Python's `threading.Condition` around its own RLock (so the lock is owned
//! by a client session and reentrant).
//!
//! `wait()` releases the lock completely, remembering the recursion count, and parks. A
//! `notify` moves waiters, oldest first, to the lock's queue with their saved count; a
//! notified wait completes with None once it holds the lock again at its old depth (Python's
//! semantics; ConCoord 1.1 could return from wait at once when another client was queued on
//! the lock, a bug we do not copy).
//!
//! As in ConCoord 1.1, `acquire()` returns None (also when reentrant or granted after
//! waiting), and so do wait, notify, notifyAll/notify_all and release; the non-blocking
//! `acquire(False)` (our extension) answers True or False. `__str__` is `<DCondition
//! object>`, `__repr__` `<Condition(<DRLock object>, WAITERS)>` with the number of calls
//! in wait() not yet notified.

use super::args::{arity, opt_int};
use super::rlock::RLock;
use super::sessionlock::{Flavor, Reply, Waiter};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    lock: RLock,
    /// Waits not yet notified, each with the recursion count it gave up.
    waiters: VecDeque<Waiter>,
}

impl Condition {
    pub fn from_args(args: &[Value]) -> Result<Condition, ObjectError> {
        arity("Condition", args, &[], 0)?;
        Ok(Condition::default())
    }

    pub fn restore(bytes: &[u8]) -> Result<Condition, ObjectError> {
        decode_state(bytes)
    }

    fn wait(
        &mut self,
        call: CallId,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        arity("wait", args, &[], 0)?;
        let count = self
            .lock
            .core()
            .release_all(call.session, fx)
            .map_err(|_| ObjectError::runtime("cannot wait on un-acquired lock"))?;
        self.waiters.push_back(Waiter {
            call,
            count,
            reply: Reply::Nil,
        });
        Ok(Outcome::Parked)
    }

    /// Wakes up to `limit` waiters (all when `None`).
    fn notify(
        &mut self,
        call: CallId,
        limit: Option<usize>,
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        if !self.lock.is_owned_by(call.session) {
            return Err(ObjectError::runtime("cannot notify on un-acquired lock"));
        }
        let n = limit.unwrap_or(self.waiters.len()).min(self.waiters.len());
        for waiter in self.waiters.drain(..n) {
            self.lock.core().enqueue(waiter, fx);
        }
        Ok(Outcome::Done(Ok(Value::Nil)))
    }

    fn dispatch(
        &mut self,
        call: CallId,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "acquire" => self.lock.acquire(call, args, Flavor::Condition),
            "release" => self.lock.release(call, args, fx),
            "wait" => self.wait(call, args, fx),
            "notify" => {
                arity(method, args, &["n"], 0)?;
                let n = opt_int(args, 0, "n", 1)?;
                let n = usize::try_from(n).map_err(|_| ObjectError::value("n must be >= 0"))?;
                self.notify(call, Some(n), fx)
            }
            "notify_all" | "notifyAll" => {
                arity(method, args, &[], 0)?;
                self.notify(call, None, fx)
            }
            _ => Err(ObjectError::no_method(self.type_name(), method)),
        }
    }
}

impl ReplicatedObject for Condition {
    fn type_name(&self) -> &'static str {
        "Condition"
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        Outcome::from_result(self.dispatch(call, method, args, fx))
    }

    fn describe(&self) -> String {
        "<DCondition object>".to_string()
    }

    /// 1.1 formats its lock with `%s`, so the lock shows as `<DRLock object>`.
    fn repr(&self) -> String {
        format!(
            "<Condition({}, {})>",
            self.lock.describe(),
            self.waiters.len()
        )
    }

    fn session_expired(&mut self, session: SessionId, fx: &mut Effects) {
        self.waiters.retain(|w| w.call.session != session);
        self.lock.session_expired(session, fx);
    }

    fn drain_parked(&mut self) -> Vec<CallId> {
        let mut parked: Vec<CallId> = self.waiters.drain(..).map(|w| w.call).collect();
        parked.extend(self.lock.drain_parked());
        parked
    }

    fn save(&self) -> Result<Vec<u8>, ObjectError> {
        encode_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn run(
        cond: &mut Condition,
        call: CallId,
        method: &str,
        args: &[Value],
    ) -> (Outcome, Vec<(CallId, super::super::CallResult)>) {
        let mut fx = Effects::default();
        let out = cond.invoke(call, method, args, &mut fx);
        (out, fx.completed)
    }

    #[test]
    fn wait_notify_round_trip_restores_recursion() {
        let mut cv = Condition::from_args(&[]).unwrap();
        assert_eq!(cv.describe(), "<DCondition object>");
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 0)>");
        // acquire() returns None, also when reentrant.
        assert_eq!(run(&mut cv, c(1, 1), "acquire", &[]).0, ok(Value::Nil));
        assert_eq!(run(&mut cv, c(1, 2), "acquire", &[]).0, ok(Value::Nil));
        assert_eq!(cv.lock.repr(), "<DRLock owner=1 count=2>");
        // Waiting frees the lock completely: session 2 can take it.
        assert_eq!(
            run(&mut cv, c(1, 3), "wait", &[]),
            (Outcome::Parked, vec![])
        );
        assert_eq!(cv.describe(), "<DCondition object>");
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 1)>");
        assert_eq!(cv.lock.repr(), "<DRLock owner=None count=0>");
        assert_eq!(run(&mut cv, c(2, 1), "acquire", &[]).0, ok(Value::Nil));
        assert_eq!(
            run(&mut cv, c(2, 2), "notify", &[]),
            (ok(Value::Nil), vec![])
        );
        // Notified, the waiter no longer counts as waiting: it queues for the lock.
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 0)>");
        // It gets the lock back, at depth 2, on release; wait() then returns None.
        assert_eq!(
            run(&mut cv, c(2, 3), "release", &[]),
            (ok(Value::Nil), vec![(c(1, 3), Ok(Value::Nil))])
        );
        assert_eq!(cv.lock.repr(), "<DRLock owner=1 count=2>");
        assert_eq!(run(&mut cv, c(1, 4), "release", &[]).0, ok(Value::Nil));
        assert_eq!(run(&mut cv, c(1, 5), "release", &[]).0, ok(Value::Nil));
        assert_eq!(cv.lock.repr(), "<DRLock owner=None count=0>");
    }

    #[test]
    fn acquire_granted_after_waiting_returns_none() {
        let mut cv = Condition::default();
        run(&mut cv, c(1, 1), "acquire", &[]);
        assert_eq!(run(&mut cv, c(2, 1), "acquire", &[]).0, Outcome::Parked);
        assert_eq!(run(&mut cv, c(3, 1), "acquire", &[v(false)]).0, ok(false));
        assert_eq!(
            run(&mut cv, c(1, 2), "release", &[]),
            (ok(Value::Nil), vec![(c(2, 1), Ok(Value::Nil))])
        );
        // The waiter queued on the lock is not a Condition waiter.
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 0)>");
        run(&mut cv, c(2, 2), "release", &[]);
        // Non-blocking (our extension): True when it got the lock.
        assert_eq!(run(&mut cv, c(3, 2), "acquire", &[v(false)]).0, ok(true));
        assert_eq!(run(&mut cv, c(3, 3), "acquire", &[v(false)]).0, ok(true));
        assert_eq!(cv.lock.repr(), "<DRLock owner=3 count=2>");
    }

    #[test]
    fn a_wait_returns_only_after_notify_even_with_others_queued() {
        // ConCoord 1.1 returns from wait() at once when another client is queued on the
        // lock; a wait must park until notified and back in the lock.
        let mut cv = Condition::default();
        run(&mut cv, c(1, 1), "acquire", &[]);
        assert_eq!(run(&mut cv, c(2, 1), "acquire", &[]).0, Outcome::Parked);
        let (out, woken) = run(&mut cv, c(1, 2), "wait", &[]);
        assert_eq!(out, Outcome::Parked);
        // The wait hands the lock to session 2; session 1's wait is still parked.
        assert_eq!(woken, vec![(c(2, 1), Ok(Value::Nil))]);
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 1)>");
        let (_, woken) = run(&mut cv, c(2, 2), "release", &[]);
        assert!(woken.is_empty(), "{woken:?}");
        run(&mut cv, c(2, 3), "acquire", &[]);
        let (out, woken) = run(&mut cv, c(2, 4), "notifyAll", &[]);
        assert_eq!((out, woken), (ok(Value::Nil), vec![]));
        let (_, woken) = run(&mut cv, c(2, 5), "release", &[]);
        assert_eq!(woken, vec![(c(1, 2), Ok(Value::Nil))]);
    }

    #[test]
    fn notify_wakes_in_fifo_order_and_n_at_a_time() {
        let mut cv = Condition::default();
        for s in 1..=3 {
            run(&mut cv, c(s, 1), "acquire", &[]);
            assert_eq!(run(&mut cv, c(s, 2), "wait", &[]).0, Outcome::Parked);
        }
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 3)>");
        run(&mut cv, c(9, 1), "acquire", &[]);
        assert_eq!(run(&mut cv, c(9, 2), "notify", &[v(2)]).0, ok(Value::Nil));
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 1)>");
        assert_eq!(cv.lock.repr(), "<DRLock owner=9 count=1>");
        let (_, woken) = run(&mut cv, c(9, 3), "release", &[]);
        assert_eq!(woken, vec![(c(1, 2), Ok(Value::Nil))]);
        let (_, woken) = run(&mut cv, c(1, 3), "release", &[]);
        assert_eq!(woken, vec![(c(2, 2), Ok(Value::Nil))]);
        assert_eq!(run(&mut cv, c(2, 3), "notifyAll", &[]).0, ok(Value::Nil));
        assert_eq!(cv.repr(), "<Condition(<DRLock object>, 0)>");
        let (_, woken) = run(&mut cv, c(2, 4), "release", &[]);
        assert_eq!(woken, vec![(c(3, 2), Ok(Value::Nil))]);
        assert_eq!(run(&mut cv, c(3, 3), "notify_all", &[]).0, ok(Value::Nil));
        assert_eq!(run(&mut cv, c(3, 4), "notify", &[v(0)]).0, ok(Value::Nil));
        assert_eq!(run(&mut cv, c(3, 5), "notify", &[]).0, ok(Value::Nil));
    }

    #[test]
    fn errors() {
        let mut cv = Condition::default();
        assert_eq!(
            run(&mut cv, c(1, 1), "wait", &[]).0,
            err("RuntimeError", "cannot wait on un-acquired lock")
        );
        assert_eq!(
            run(&mut cv, c(1, 2), "notify", &[]).0,
            err("RuntimeError", "cannot notify on un-acquired lock")
        );
        assert_eq!(
            run(&mut cv, c(1, 3), "notify_all", &[]).0,
            err("RuntimeError", "cannot notify on un-acquired lock")
        );
        assert_eq!(
            run(&mut cv, c(1, 6), "notifyAll", &[]).0,
            err("RuntimeError", "cannot notify on un-acquired lock")
        );
        assert_eq!(
            run(&mut cv, c(1, 4), "release", &[]).0,
            err("RuntimeError", "cannot release un-acquired lock")
        );
        run(&mut cv, c(2, 1), "acquire", &[]);
        assert_eq!(
            run(&mut cv, c(1, 5), "wait", &[]).0,
            err("RuntimeError", "cannot wait on un-acquired lock")
        );
        assert_eq!(
            run(&mut cv, c(2, 2), "notify", &[v(-1)]).0,
            err("ValueError", "n must be >= 0")
        );
        assert_eq!(
            run(&mut cv, c(2, 3), "notify", &[v("x")]).0,
            err("TypeError", "expected int for 'n', got str")
        );
        assert_eq!(
            run(&mut cv, c(2, 4), "wait", &[v(1.5)]).0,
            err(
                "TypeError",
                "wait() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            run(&mut cv, c(2, 5), "signal", &[]).0,
            err(
                "AttributeError",
                "'Condition' object has no attribute 'signal'"
            )
        );
        assert!(Condition::from_args(&[Value::Nil]).is_err());
    }

    #[test]
    fn expiry_drops_waiters_and_frees_the_lock() {
        let mut cv = Condition::default();
        run(&mut cv, c(1, 1), "acquire", &[]);
        run(&mut cv, c(1, 2), "wait", &[]);
        run(&mut cv, c(2, 1), "acquire", &[]);
        run(&mut cv, c(2, 2), "wait", &[]);
        run(&mut cv, c(3, 1), "acquire", &[]);
        run(&mut cv, c(3, 2), "notify_all", &[]);
        run(&mut cv, c(4, 1), "acquire", &[]);
        let mut fx = Effects::default();
        cv.session_expired(1, &mut fx);
        assert!(fx.completed.is_empty());
        cv.session_expired(3, &mut fx);
        assert_eq!(fx.completed, vec![(c(2, 2), Ok(Value::Nil))]);
        assert_eq!(cv.drain_parked(), vec![c(4, 1)]);
    }

    #[test]
    fn drain_and_save_restore() {
        let mut cv = Condition::default();
        run(&mut cv, c(1, 1), "acquire", &[]);
        run(&mut cv, c(1, 2), "wait", &[]);
        run(&mut cv, c(2, 1), "acquire", &[]);
        run(&mut cv, c(3, 1), "acquire", &[]);
        let back = Condition::restore(&cv.save().unwrap()).unwrap();
        assert_eq!(back, cv);
        assert_eq!(cv.drain_parked(), vec![c(1, 2), c(3, 1)]);
    }
}
