//! `Semaphore(count=1)`: Python's `threading.Semaphore`, with the permit logic that
//! BoundedSemaphore shares ([`Permits`]).
//!
//! Permits a session holds are tracked so that an expired session gives them back. Any
//! session may release (as in Python, where a semaphore is also a signal); a release counts
//! against the releaser's own holdings when it has some. Freed permits go to parked
//! acquires oldest first, so a waiter is never overtaken.
//!
//! As in ConCoord 1.1, `acquire()` returns True (at once or after waiting), `release()`
//! None, a negative count is a ValueError with no message, `__str__` is `<DSemaphore
//! object>` and `__repr__` `<DSemaphore count=N>`, where N is the free permits minus the
//! parked acquires (1.1 counts down below zero: one waiter on an empty semaphore is -1).

use super::args::{arity, opt_bool, opt_int};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// A counting semaphore; `bounded` refuses releases above the initial value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Permits {
    /// Permits available now. Parked acquires exist only while this is 0.
    value: u64,
    initial: u64,
    bounded: bool,
    waiters: VecDeque<CallId>,
    held: BTreeMap<SessionId, u64>,
}

impl Permits {
    /// The constructor of `type_name(count=1)`.
    pub fn from_args(
        type_name: &str,
        args: &[Value],
        bounded: bool,
    ) -> Result<Permits, ObjectError> {
        arity(type_name, args, &["count"], 0)?;
        let count = opt_int(args, 0, "count", 1)?;
        // ConCoord 1.1 raises a bare ValueError.
        let value = u64::try_from(count).map_err(|_| ObjectError::value(""))?;
        Ok(Permits {
            value,
            initial: value,
            bounded,
            ..Permits::default()
        })
    }

    pub fn value(&self) -> u64 {
        self.value
    }

    pub fn initial(&self) -> u64 {
        self.initial
    }

    /// ConCoord 1.1's count: the free permits minus the parked acquires (negative while
    /// calls wait).
    pub fn count(&self) -> i128 {
        i128::from(self.value) - self.waiters.len() as i128
    }

    /// Methods common to both semaphore types.
    pub fn invoke(
        &mut self,
        type_name: &str,
        call: CallId,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Outcome {
        Outcome::from_result(match method {
            "acquire" => self.acquire(call, args),
            "release" => self.release(call, args, fx),
            _ => Err(ObjectError::no_method(type_name, method)),
        })
    }

    fn acquire(&mut self, call: CallId, args: &[Value]) -> Result<Outcome, ObjectError> {
        arity("acquire", args, &["blocking"], 0)?;
        if self.value > 0 {
            self.value -= 1;
            self.grant(call.session);
            Ok(Outcome::Done(Ok(Value::Boolean(true))))
        } else if opt_bool(args, 0, true) {
            self.waiters.push_back(call);
            Ok(Outcome::Parked)
        } else {
            Ok(Outcome::Done(Ok(Value::Boolean(false))))
        }
    }

    fn release(
        &mut self,
        call: CallId,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        arity("release", args, &["n"], 0)?;
        let n = opt_int(args, 0, "n", 1)?;
        let n = u64::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ObjectError::value("n must be one or more"))?;
        let value = self
            .value
            .checked_add(n)
            .ok_or_else(|| ObjectError::new("OverflowError", "semaphore value out of range"))?;
        if self.bounded && value > self.initial {
            return Err(ObjectError::value("Semaphore released too many times"));
        }
        self.value = value;
        if let Some(held) = self.held.get_mut(&call.session) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                self.held.remove(&call.session);
            }
        }
        self.wake(fx);
        Ok(Outcome::Done(Ok(Value::Nil)))
    }

    fn grant(&mut self, session: SessionId) {
        let held = self.held.entry(session).or_default();
        *held = held.saturating_add(1);
    }

    /// Hands available permits to parked acquires, oldest first.
    fn wake(&mut self, fx: &mut Effects) {
        while self.value > 0 {
            let Some(call) = self.waiters.pop_front() else {
                break;
            };
            self.value -= 1;
            self.grant(call.session);
            fx.complete(call, Ok(Value::Boolean(true)));
        }
    }

    /// Drops the session's parked acquires and returns its permits. A bounded semaphore
    /// never goes above its initial value (another session may have released for it).
    pub fn session_expired(&mut self, session: SessionId, fx: &mut Effects) {
        self.waiters.retain(|c| c.session != session);
        if let Some(held) = self.held.remove(&session) {
            self.value = self.value.saturating_add(held);
            if self.bounded {
                self.value = self.value.min(self.initial);
            }
            self.wake(fx);
        }
    }

    pub fn drain(&mut self) -> Vec<CallId> {
        self.waiters.drain(..).collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Semaphore {
    permits: Permits,
}

impl Semaphore {
    pub fn from_args(args: &[Value]) -> Result<Semaphore, ObjectError> {
        Ok(Semaphore {
            permits: Permits::from_args("Semaphore", args, false)?,
        })
    }

    pub fn restore(bytes: &[u8]) -> Result<Semaphore, ObjectError> {
        decode_state(bytes)
    }
}

impl ReplicatedObject for Semaphore {
    fn type_name(&self) -> &'static str {
        "Semaphore"
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        self.permits.invoke("Semaphore", call, method, args, fx)
    }

    fn describe(&self) -> String {
        "<DSemaphore object>".to_string()
    }

    fn repr(&self) -> String {
        format!("<DSemaphore count={}>", self.permits.count())
    }

    fn session_expired(&mut self, session: SessionId, fx: &mut Effects) {
        self.permits.session_expired(session, fx);
    }

    fn drain_parked(&mut self) -> Vec<CallId> {
        self.permits.drain()
    }

    fn save(&self) -> Result<Vec<u8>, ObjectError> {
        encode_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn sem(count: i64) -> Semaphore {
        Semaphore::from_args(&[v(count)]).unwrap()
    }

    #[test]
    fn acquire_release_counts() {
        let mut s = Semaphore::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(s.describe(), "<DSemaphore object>");
        assert_eq!(s.repr(), "<DSemaphore count=1>");
        assert_eq!(s.invoke(c(1, 1), "acquire", &[], &mut fx), ok(true));
        assert_eq!(s.describe(), "<DSemaphore object>");
        assert_eq!(s.repr(), "<DSemaphore count=0>");
        assert_eq!(
            s.invoke(c(2, 1), "acquire", &[v(false)], &mut fx),
            ok(false)
        );
        assert_eq!(s.repr(), "<DSemaphore count=0>");
        assert_eq!(s.invoke(c(1, 2), "release", &[], &mut fx), ok(Value::Nil));
        // An unbounded semaphore may grow past its initial value, as in Python.
        assert_eq!(
            s.invoke(c(1, 3), "release", &[v(2)], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(s.repr(), "<DSemaphore count=3>");
        assert_eq!(s.invoke(c(2, 2), "acquire", &[v(true)], &mut fx), ok(true));
        assert_eq!(s.invoke(c(2, 3), "acquire", &[v(false)], &mut fx), ok(true));
        assert_eq!(s.repr(), "<DSemaphore count=1>");
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn errors() {
        let mut fx = Effects::default();
        // ConCoord 1.1: a bare ValueError, no message.
        assert_eq!(
            Semaphore::from_args(&[v(-1)]).unwrap_err(),
            ObjectError::value("")
        );
        assert_eq!(
            Semaphore::from_args(&[v(i64::MIN)]).unwrap_err(),
            ObjectError::value("")
        );
        assert_eq!(
            Semaphore::from_args(&[v("3")]).unwrap_err().message,
            "expected int for 'count', got str"
        );
        assert_eq!(
            Semaphore::from_args(&[v(1), v(2)]).unwrap_err().message,
            "Semaphore() takes from 0 to 1 positional arguments but 2 were given"
        );
        let mut s = sem(0);
        assert_eq!(
            s.invoke(c(1, 1), "release", &[v(0)], &mut fx),
            err("ValueError", "n must be one or more")
        );
        assert_eq!(
            s.invoke(c(1, 2), "release", &[v(-5)], &mut fx),
            err("ValueError", "n must be one or more")
        );
        assert_eq!(
            s.invoke(c(1, 3), "release", &[v(i64::MAX)], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            s.invoke(c(1, 4), "release", &[v(i64::MAX)], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            s.invoke(c(1, 5), "release", &[v(i64::MAX)], &mut fx),
            err("OverflowError", "semaphore value out of range")
        );
        assert_eq!(s.repr(), format!("<DSemaphore count={}>", u64::MAX - 1));
        assert_eq!(
            s.invoke(c(1, 6), "wait", &[], &mut fx),
            err(
                "AttributeError",
                "'Semaphore' object has no attribute 'wait'"
            )
        );
    }

    #[test]
    fn release_wakes_waiters_fifo() {
        let mut s = sem(0);
        let mut fx = Effects::default();
        assert_eq!(s.repr(), "<DSemaphore count=0>");
        assert_eq!(s.invoke(c(2, 1), "acquire", &[], &mut fx), Outcome::Parked);
        // 1.1 counts each waiter below zero.
        assert_eq!(s.repr(), "<DSemaphore count=-1>");
        assert_eq!(s.invoke(c(3, 1), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(s.repr(), "<DSemaphore count=-2>");
        assert_eq!(s.invoke(c(4, 1), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(s.repr(), "<DSemaphore count=-3>");
        // A non-blocking attempt does not wait, so it does not count.
        assert_eq!(
            s.invoke(c(5, 1), "acquire", &[v(false)], &mut fx),
            ok(false)
        );
        assert_eq!(s.repr(), "<DSemaphore count=-3>");
        assert_eq!(s.describe(), "<DSemaphore object>");
        assert_eq!(
            s.invoke(c(1, 1), "release", &[v(2)], &mut fx),
            ok(Value::Nil)
        );
        // Granted after waiting: True.
        assert_eq!(
            fx.completed,
            vec![(c(2, 1), Ok(v(true))), (c(3, 1), Ok(v(true)))]
        );
        assert_eq!(s.repr(), "<DSemaphore count=-1>");
        assert_eq!(s.drain_parked(), vec![c(4, 1)]);
        assert_eq!(s.repr(), "<DSemaphore count=0>");
    }

    #[test]
    fn expiry_returns_permits_and_drops_waiters() {
        let mut s = sem(2);
        let mut fx = Effects::default();
        s.invoke(c(1, 1), "acquire", &[], &mut fx);
        s.invoke(c(1, 2), "acquire", &[], &mut fx);
        s.invoke(c(2, 1), "acquire", &[], &mut fx);
        s.invoke(c(3, 1), "acquire", &[], &mut fx);
        s.invoke(c(4, 1), "acquire", &[], &mut fx);
        assert_eq!(s.repr(), "<DSemaphore count=-3>");
        s.session_expired(2, &mut fx);
        assert!(fx.completed.is_empty());
        assert_eq!(s.repr(), "<DSemaphore count=-2>");
        s.session_expired(1, &mut fx);
        assert_eq!(
            fx.completed,
            vec![(c(3, 1), Ok(v(true))), (c(4, 1), Ok(v(true)))]
        );
        // Session 3 releases its permit itself, so its expiry returns nothing more.
        s.invoke(c(3, 2), "release", &[], &mut fx);
        s.session_expired(3, &mut fx);
        assert_eq!(s.repr(), "<DSemaphore count=1>");
        s.session_expired(4, &mut fx);
        assert_eq!(s.repr(), "<DSemaphore count=2>");
    }

    #[test]
    fn save_restore() {
        let mut s = sem(1);
        let mut fx = Effects::default();
        s.invoke(c(1, 1), "acquire", &[], &mut fx);
        s.invoke(c(2, 1), "acquire", &[], &mut fx);
        let back = Semaphore::restore(&s.save().unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.repr(), "<DSemaphore count=-1>");
        assert!(Semaphore::restore(&[0xc1]).is_err());
    }
}
