//! `RLock()`: Python's reentrant `threading.RLock`, owned by a client session. The owner may
//! acquire it again (a count); it is free once the owner released as often as it acquired.
//! Condition reuses this type for its lock.
//!
//! Return values are ConCoord 1.1's: `acquire()` returns True when it takes the lock and the
//! integer 1 when its owner acquires it again. An acquire granted after waiting returns True
//! (a deliberate deviation: 1.1 loses the return value of a parked call and answers None).
//! `__str__` is `<DRLock object>`, `__repr__` `<DRLock owner=SESSION count=N>`.

use super::args::arity;
use super::sessionlock::{Flavor, SessionLock};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RLock {
    lock: SessionLock,
}

impl RLock {
    pub fn from_args(args: &[Value]) -> Result<RLock, ObjectError> {
        arity("RLock", args, &[], 0)?;
        Ok(RLock::default())
    }

    pub fn restore(bytes: &[u8]) -> Result<RLock, ObjectError> {
        decode_state(bytes)
    }

    /// `acquire(blocking=True)` for a lock of `flavor` (RLock, or the lock of a Condition,
    /// which returns other values): what [`Flavor::granted`] says when granted, False when
    /// not blocking and held by another session; parks otherwise.
    pub fn acquire(
        &mut self,
        call: CallId,
        args: &[Value],
        flavor: Flavor,
    ) -> Result<Outcome, ObjectError> {
        self.lock.acquire_call(call, args, flavor)
    }

    /// `release()`: only the owning session may release.
    pub fn release(
        &mut self,
        call: CallId,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        self.lock.release_call(call, args, fx)
    }

    /// The underlying lock, for Condition's wait and notify.
    pub fn core(&mut self) -> &mut SessionLock {
        &mut self.lock
    }

    pub fn is_owned_by(&self, session: SessionId) -> bool {
        self.lock.is_owned_by(session)
    }
}

impl ReplicatedObject for RLock {
    fn type_name(&self) -> &'static str {
        "RLock"
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        Outcome::from_result(match method {
            "acquire" => self.acquire(call, args, Flavor::RLock),
            "release" => self.release(call, args, fx),
            _ => Err(ObjectError::no_method(self.type_name(), method)),
        })
    }

    fn describe(&self) -> String {
        "<DRLock object>".to_string()
    }

    fn repr(&self) -> String {
        let owner = self
            .lock
            .owner()
            .map_or_else(|| "None".to_string(), |s| s.to_string());
        format!("<DRLock owner={owner} count={}>", self.lock.count())
    }

    fn session_expired(&mut self, session: SessionId, fx: &mut Effects) {
        self.lock.session_expired(session, fx);
    }

    fn drain_parked(&mut self) -> Vec<CallId> {
        self.lock.drain()
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
    fn reentrant_per_session() {
        let mut l = RLock::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(l.describe(), "<DRLock object>");
        assert_eq!(l.repr(), "<DRLock owner=None count=0>");
        // First acquisition: True; again by the owner: the integer 1, as in ConCoord 1.1.
        assert_eq!(l.invoke(c(7, 1), "acquire", &[], &mut fx), ok(true));
        assert_eq!(l.invoke(c(7, 2), "acquire", &[], &mut fx), ok(1));
        assert_eq!(l.invoke(c(7, 3), "acquire", &[v(false)], &mut fx), ok(1));
        assert_eq!(l.describe(), "<DRLock object>");
        assert_eq!(l.repr(), "<DRLock owner=7 count=3>");
        assert_eq!(
            l.invoke(c(8, 1), "acquire", &[v(false)], &mut fx),
            ok(false)
        );
        assert_eq!(l.invoke(c(8, 2), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(l.invoke(c(7, 4), "release", &[], &mut fx), ok(Value::Nil));
        assert_eq!(l.invoke(c(7, 5), "release", &[], &mut fx), ok(Value::Nil));
        assert!(fx.completed.is_empty());
        assert_eq!(l.invoke(c(7, 6), "release", &[], &mut fx), ok(Value::Nil));
        // Granted after waiting: True (1.1 would lose this value and answer None).
        assert_eq!(fx.completed, vec![(c(8, 2), Ok(v(true)))]);
        assert_eq!(l.repr(), "<DRLock owner=8 count=1>");
        // The new owner's reentrant acquire is 1 as well.
        assert_eq!(l.invoke(c(8, 3), "acquire", &[], &mut fx), ok(1));
        assert_eq!(l.repr(), "<DRLock owner=8 count=2>");
    }

    #[test]
    fn errors() {
        let mut l = RLock::default();
        let mut fx = Effects::default();
        assert_eq!(
            l.invoke(c(1, 1), "release", &[], &mut fx),
            err("RuntimeError", "cannot release un-acquired lock")
        );
        l.invoke(c(1, 2), "acquire", &[], &mut fx);
        assert_eq!(
            l.invoke(c(2, 1), "release", &[], &mut fx),
            err("RuntimeError", "cannot release un-acquired lock")
        );
        assert_eq!(
            l.invoke(c(1, 3), "release", &[v(1)], &mut fx),
            err(
                "TypeError",
                "release() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            l.invoke(c(1, 4), "locked", &[], &mut fx),
            err("AttributeError", "'RLock' object has no attribute 'locked'")
        );
        assert!(RLock::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn expiry_hands_over_and_drops_waiters() {
        let mut l = RLock::default();
        let mut fx = Effects::default();
        l.invoke(c(1, 1), "acquire", &[], &mut fx);
        l.invoke(c(1, 2), "acquire", &[], &mut fx);
        l.invoke(c(2, 1), "acquire", &[], &mut fx);
        l.invoke(c(3, 1), "acquire", &[], &mut fx);
        l.session_expired(2, &mut fx);
        l.session_expired(1, &mut fx);
        assert_eq!(fx.completed, vec![(c(3, 1), Ok(v(true)))]);
        assert_eq!(l.repr(), "<DRLock owner=3 count=1>");
        l.invoke(c(4, 1), "acquire", &[], &mut fx);
        assert_eq!(l.drain_parked(), vec![c(4, 1)]);
    }

    #[test]
    fn save_restore() {
        let mut l = RLock::default();
        let mut fx = Effects::default();
        l.invoke(c(1, 1), "acquire", &[], &mut fx);
        l.invoke(c(1, 2), "acquire", &[], &mut fx);
        l.invoke(c(2, 1), "acquire", &[], &mut fx);
        assert_eq!(RLock::restore(&l.save().unwrap()).unwrap(), l);
    }
}
