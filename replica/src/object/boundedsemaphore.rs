//! `BoundedSemaphore(count=1)`: a [`Permits`] semaphore that refuses to be released above
//! its initial value (Python's ValueError "Semaphore released too many times"; ConCoord 1.1
//! returns that exception instead of raising it, a bug we do not copy).
//!
//! Otherwise as Semaphore: `acquire()` returns True, `release()` None, `__str__` is
//! `<DBoundedSemaphore object>` and `__repr__` `<DBoundedSemaphore count=N init=I>` with
//! ConCoord 1.1's count (negative while calls wait).

use super::semaphore::Permits;
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundedSemaphore {
    permits: Permits,
}

impl BoundedSemaphore {
    pub fn from_args(args: &[Value]) -> Result<BoundedSemaphore, ObjectError> {
        Ok(BoundedSemaphore {
            permits: Permits::from_args("BoundedSemaphore", args, true)?,
        })
    }

    pub fn restore(bytes: &[u8]) -> Result<BoundedSemaphore, ObjectError> {
        decode_state(bytes)
    }
}

impl ReplicatedObject for BoundedSemaphore {
    fn type_name(&self) -> &'static str {
        "BoundedSemaphore"
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        self.permits
            .invoke("BoundedSemaphore", call, method, args, fx)
    }

    fn describe(&self) -> String {
        "<DBoundedSemaphore object>".to_string()
    }

    fn repr(&self) -> String {
        format!(
            "<DBoundedSemaphore count={} init={}>",
            self.permits.count(),
            self.permits.initial()
        )
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

    #[test]
    fn release_above_initial_is_refused() {
        let mut s = BoundedSemaphore::from_args(&[v(2)]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(s.describe(), "<DBoundedSemaphore object>");
        assert_eq!(s.repr(), "<DBoundedSemaphore count=2 init=2>");
        assert_eq!(
            s.invoke(c(1, 1), "release", &[], &mut fx),
            err("ValueError", "Semaphore released too many times")
        );
        assert_eq!(s.invoke(c(1, 2), "acquire", &[], &mut fx), ok(true));
        assert_eq!(s.repr(), "<DBoundedSemaphore count=1 init=2>");
        assert_eq!(
            s.invoke(c(1, 3), "release", &[v(2)], &mut fx),
            err("ValueError", "Semaphore released too many times")
        );
        assert_eq!(s.invoke(c(1, 4), "release", &[], &mut fx), ok(Value::Nil));
        assert_eq!(s.repr(), "<DBoundedSemaphore count=2 init=2>");
        assert_eq!(
            s.invoke(c(1, 5), "release", &[], &mut fx),
            err("ValueError", "Semaphore released too many times")
        );
        // The refused release changed nothing.
        assert_eq!(s.repr(), "<DBoundedSemaphore count=2 init=2>");
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn blocking_and_errors() {
        let mut s = BoundedSemaphore::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(s.invoke(c(1, 1), "acquire", &[], &mut fx), ok(true));
        assert_eq!(s.invoke(c(2, 1), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(s.repr(), "<DBoundedSemaphore count=-1 init=1>");
        assert_eq!(s.invoke(c(4, 1), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(s.repr(), "<DBoundedSemaphore count=-2 init=1>");
        assert_eq!(
            s.invoke(c(3, 1), "acquire", &[v(false)], &mut fx),
            ok(false)
        );
        assert_eq!(s.invoke(c(1, 2), "release", &[], &mut fx), ok(Value::Nil));
        // Granted after waiting: True.
        assert_eq!(fx.completed, vec![(c(2, 1), Ok(v(true)))]);
        assert_eq!(s.repr(), "<DBoundedSemaphore count=-1 init=1>");
        assert_eq!(s.describe(), "<DBoundedSemaphore object>");
        // ConCoord 1.1: a bare ValueError, no message.
        assert_eq!(
            BoundedSemaphore::from_args(&[v(-2)]).unwrap_err(),
            ObjectError::value("")
        );
        assert_eq!(
            s.invoke(c(1, 3), "locked", &[], &mut fx),
            err(
                "AttributeError",
                "'BoundedSemaphore' object has no attribute 'locked'"
            )
        );
    }

    #[test]
    fn expiry_never_exceeds_the_bound() {
        let mut s = BoundedSemaphore::from_args(&[v(1)]).unwrap();
        let mut fx = Effects::default();
        s.invoke(c(1, 1), "acquire", &[], &mut fx);
        // Session 2 releases on session 1's behalf; 1 still counts one permit.
        s.invoke(c(2, 1), "release", &[], &mut fx);
        s.session_expired(1, &mut fx);
        assert_eq!(s.repr(), "<DBoundedSemaphore count=1 init=1>");
        s.invoke(c(3, 1), "acquire", &[], &mut fx);
        s.invoke(c(4, 1), "acquire", &[], &mut fx);
        s.session_expired(3, &mut fx);
        assert_eq!(fx.completed, vec![(c(4, 1), Ok(v(true)))]);
    }

    #[test]
    fn save_restore() {
        let mut s = BoundedSemaphore::from_args(&[v(1)]).unwrap();
        let mut fx = Effects::default();
        s.invoke(c(1, 1), "acquire", &[], &mut fx);
        s.invoke(c(2, 1), "acquire", &[], &mut fx);
        let back = BoundedSemaphore::restore(&s.save().unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.repr(), "<DBoundedSemaphore count=-1 init=1>");
        let mut back = back;
        assert_eq!(back.drain_parked(), vec![c(2, 1)]);
    }
}
