//! `Barrier(parties=1)`: ConCoord 1.1's Barrier, reusable like Python's
//! `threading.Barrier`. `wait()` parks until `parties` calls have arrived, then all of them
//! complete with None (as in 1.1; Python would return an arrival index), and the barrier is
//! ready for the next round. Every waiter of a round is woken (1.1 can lose wakeups across
//! rounds; we do not copy that).
//!
//! `__str__` is 1.1's `<Barrier object>`; `__repr__` shows the state,
//! `<DBarrier parties=P n_waiting=W broken=False>`.
//!
//! `abort()` breaks the barrier: waiting calls and later `wait()`s fail with
//! BrokenBarrierError until `reset()`. `reset()` fails the waiting calls the same way and
//! leaves the barrier whole. A session that expires while waiting simply leaves the round.

use super::args::{arity, opt_int, py_bool};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Barrier {
    parties: u64,
    /// This round's waiting calls in arrival order.
    waiting: Vec<CallId>,
    broken: bool,
}

fn broken_error() -> ObjectError {
    ObjectError::new("BrokenBarrierError", "")
}

impl Barrier {
    pub fn from_args(args: &[Value]) -> Result<Barrier, ObjectError> {
        arity("Barrier", args, &["parties"], 0)?;
        let parties = opt_int(args, 0, "parties", 1)?;
        let parties = u64::try_from(parties)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| ObjectError::value("parties must be >= 1"))?;
        Ok(Barrier {
            parties,
            waiting: Vec::new(),
            broken: false,
        })
    }

    pub fn restore(bytes: &[u8]) -> Result<Barrier, ObjectError> {
        decode_state(bytes)
    }

    /// The last arrival of a round completes the others and returns; all return None.
    fn wait(&mut self, call: CallId, fx: &mut Effects) -> Outcome {
        if self.broken {
            return Outcome::Done(Err(broken_error()));
        }
        let arrived = (self.waiting.len() as u64).saturating_add(1);
        if arrived < self.parties {
            self.waiting.push(call);
            return Outcome::Parked;
        }
        for call in self.waiting.drain(..) {
            fx.complete(call, Ok(Value::Nil));
        }
        Outcome::Done(Ok(Value::Nil))
    }

    fn fail_waiting(&mut self, fx: &mut Effects) {
        for call in self.waiting.drain(..) {
            fx.complete(call, Err(broken_error()));
        }
    }

    fn dispatch(
        &mut self,
        call: CallId,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        arity(method, args, &[], 0)?;
        let result = match method {
            "wait" => return Ok(self.wait(call, fx)),
            "reset" => {
                self.fail_waiting(fx);
                self.broken = false;
                Value::Nil
            }
            "abort" => {
                self.fail_waiting(fx);
                self.broken = true;
                Value::Nil
            }
            "parties" => Value::from(self.parties),
            "n_waiting" => Value::from(self.waiting.len() as u64),
            "broken" => Value::Boolean(self.broken),
            _ => return Err(ObjectError::no_method(self.type_name(), method)),
        };
        Ok(Outcome::Done(Ok(result)))
    }
}

impl ReplicatedObject for Barrier {
    fn type_name(&self) -> &'static str {
        "Barrier"
    }

    fn is_read_only(&self, method: &str) -> bool {
        matches!(method, "parties" | "n_waiting" | "broken")
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        Outcome::from_result(self.dispatch(call, method, args, fx))
    }

    fn describe(&self) -> String {
        "<Barrier object>".to_string()
    }

    fn repr(&self) -> String {
        format!(
            "<DBarrier parties={} n_waiting={} broken={}>",
            self.parties,
            self.waiting.len(),
            py_bool(self.broken)
        )
    }

    fn session_expired(&mut self, session: SessionId, _fx: &mut Effects) {
        self.waiting.retain(|c| c.session != session);
    }

    fn drain_parked(&mut self) -> Vec<CallId> {
        self.waiting.drain(..).collect()
    }

    fn save(&self) -> Result<Vec<u8>, ObjectError> {
        encode_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn barrier(parties: i64) -> Barrier {
        Barrier::from_args(&[v(parties)]).unwrap()
    }

    #[test]
    fn rounds_wake_every_waiter_with_none() {
        let mut b = barrier(3);
        for round in 0..3 {
            let mut fx = Effects::default();
            assert_eq!(b.invoke(c(1, round), "wait", &[], &mut fx), Outcome::Parked);
            assert_eq!(b.invoke(c(2, round), "wait", &[], &mut fx), Outcome::Parked);
            assert_eq!(b.invoke(c(3, round), "n_waiting", &[], &mut fx), ok(2));
            assert_eq!(b.describe(), "<Barrier object>");
            assert_eq!(b.repr(), "<DBarrier parties=3 n_waiting=2 broken=False>");
            assert!(fx.completed.is_empty());
            // The last arrival returns None and wakes both others with None.
            assert_eq!(
                b.invoke(c(3, round + 10), "wait", &[], &mut fx),
                ok(Value::Nil)
            );
            assert_eq!(
                fx.completed,
                vec![(c(1, round), Ok(Value::Nil)), (c(2, round), Ok(Value::Nil))]
            );
            assert_eq!(b.invoke(c(3, round + 20), "n_waiting", &[], &mut fx), ok(0));
            assert_eq!(b.repr(), "<DBarrier parties=3 n_waiting=0 broken=False>");
        }
    }

    #[test]
    fn one_party_never_waits() {
        let mut b = Barrier::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(b.invoke(c(1, 1), "wait", &[], &mut fx), ok(Value::Nil));
        assert_eq!(b.invoke(c(1, 2), "wait", &[], &mut fx), ok(Value::Nil));
        assert_eq!(b.invoke(c(1, 3), "parties", &[], &mut fx), ok(1));
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn reset_and_abort_break_waiters() {
        let mut b = barrier(2);
        let mut fx = Effects::default();
        b.invoke(c(1, 1), "wait", &[], &mut fx);
        assert_eq!(b.invoke(c(2, 1), "reset", &[], &mut fx), ok(Value::Nil));
        assert_eq!(
            fx.completed,
            vec![(c(1, 1), Err(ObjectError::new("BrokenBarrierError", "")))]
        );
        assert_eq!(b.invoke(c(2, 2), "broken", &[], &mut fx), ok(false));

        let mut fx = Effects::default();
        b.invoke(c(1, 2), "wait", &[], &mut fx);
        b.invoke(c(2, 3), "abort", &[], &mut fx);
        assert_eq!(
            fx.completed,
            vec![(c(1, 2), Err(ObjectError::new("BrokenBarrierError", "")))]
        );
        assert_eq!(b.invoke(c(2, 4), "broken", &[], &mut fx), ok(true));
        assert_eq!(b.describe(), "<Barrier object>");
        assert_eq!(b.repr(), "<DBarrier parties=2 n_waiting=0 broken=True>");
        assert_eq!(
            b.invoke(c(2, 5), "wait", &[], &mut fx),
            err("BrokenBarrierError", "")
        );
        b.invoke(c(2, 6), "reset", &[], &mut fx);
        assert_eq!(b.invoke(c(2, 7), "wait", &[], &mut fx), Outcome::Parked);
        let mut fx = Effects::default();
        assert_eq!(b.invoke(c(1, 3), "wait", &[], &mut fx), ok(Value::Nil));
        assert_eq!(fx.completed, vec![(c(2, 7), Ok(Value::Nil))]);
    }

    #[test]
    fn errors() {
        for bad in [0, -1] {
            assert_eq!(
                Barrier::from_args(&[v(bad)]).unwrap_err(),
                ObjectError::value("parties must be >= 1")
            );
        }
        assert_eq!(Barrier::from_args(&[v("2")]).unwrap_err().kind, "TypeError");
        let mut b = barrier(2);
        let mut fx = Effects::default();
        assert_eq!(
            b.invoke(c(1, 1), "wait", &[v(1)], &mut fx),
            err(
                "TypeError",
                "wait() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            b.invoke(c(1, 2), "join", &[], &mut fx),
            err("AttributeError", "'Barrier' object has no attribute 'join'")
        );
    }

    #[test]
    fn expired_session_leaves_the_round() {
        let mut b = barrier(3);
        let mut fx = Effects::default();
        b.invoke(c(1, 1), "wait", &[], &mut fx);
        b.invoke(c(2, 1), "wait", &[], &mut fx);
        b.session_expired(1, &mut fx);
        assert_eq!(b.invoke(c(3, 1), "wait", &[], &mut fx), Outcome::Parked);
        assert_eq!(b.invoke(c(4, 1), "wait", &[], &mut fx), ok(Value::Nil));
        assert_eq!(
            fx.completed,
            vec![(c(2, 1), Ok(Value::Nil)), (c(3, 1), Ok(Value::Nil))]
        );
    }

    #[test]
    fn save_restore_and_drain() {
        let mut b = barrier(3);
        let mut fx = Effects::default();
        b.invoke(c(1, 1), "wait", &[], &mut fx);
        let mut back = Barrier::restore(&b.save().unwrap()).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.drain_parked(), vec![c(1, 1)]);
    }
}
