//! `Lock()`: Python's non-reentrant `threading.Lock`, owned by the client session that
//! acquired it. Acquiring a held lock parks the call, even for its holder (Python's Lock
//! would deadlock there too); release hands it to the oldest waiter.
//!
//! As in ConCoord 1.1, `acquire()` returns None, whether granted at once or after waiting;
//! the non-blocking `acquire(False)` (our extension) answers True or False. `__str__` is
//! `<DLock object>`, `__repr__` `<DLock owner=None>` or `<DLock owner=SESSION>`.

use super::args::arity;
use super::sessionlock::{Flavor, SessionLock};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    lock: SessionLock,
}

impl Lock {
    pub fn from_args(args: &[Value]) -> Result<Lock, ObjectError> {
        arity("Lock", args, &[], 0)?;
        Ok(Lock::default())
    }

    pub fn restore(bytes: &[u8]) -> Result<Lock, ObjectError> {
        decode_state(bytes)
    }

    fn dispatch(
        &mut self,
        call: CallId,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "acquire" => self.lock.acquire_call(call, args, Flavor::Lock),
            "release" => self.lock.release_call(call, args, fx),
            "locked" => {
                arity(method, args, &[], 0)?;
                Ok(Outcome::Done(Ok(Value::Boolean(self.lock.locked()))))
            }
            _ => Err(ObjectError::no_method(self.type_name(), method)),
        }
    }
}

impl ReplicatedObject for Lock {
    fn type_name(&self) -> &'static str {
        "Lock"
    }

    fn is_read_only(&self, method: &str) -> bool {
        matches!(method, "locked")
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        Outcome::from_result(self.dispatch(call, method, args, fx))
    }

    fn describe(&self) -> String {
        "<DLock object>".to_string()
    }

    fn repr(&self) -> String {
        let owner = self
            .lock
            .owner()
            .map_or_else(|| "None".to_string(), |s| s.to_string());
        format!("<DLock owner={owner}>")
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
    fn acquire_release_locked() {
        let mut l = Lock::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(l.invoke(c(1, 1), "locked", &[], &mut fx), ok(false));
        assert_eq!(l.describe(), "<DLock object>");
        assert_eq!(l.repr(), "<DLock owner=None>");
        // ConCoord 1.1's acquire() returns None.
        assert_eq!(l.invoke(c(1, 2), "acquire", &[], &mut fx), ok(Value::Nil));
        assert_eq!(l.describe(), "<DLock object>");
        assert_eq!(l.repr(), "<DLock owner=1>");
        assert_eq!(l.invoke(c(1, 3), "locked", &[], &mut fx), ok(true));
        assert_eq!(l.invoke(c(1, 4), "release", &[], &mut fx), ok(Value::Nil));
        assert_eq!(l.invoke(c(1, 5), "locked", &[], &mut fx), ok(false));
        assert_eq!(l.repr(), "<DLock owner=None>");
        // An explicit blocking acquire is the same call.
        assert_eq!(
            l.invoke(c(1, 6), "acquire", &[v(true)], &mut fx),
            ok(Value::Nil)
        );
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn errors() {
        let mut l = Lock::default();
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
            l.invoke(c(2, 2), "acquire", &[v(true), v(1)], &mut fx),
            err(
                "TypeError",
                "acquire() takes from 0 to 1 positional arguments but 2 were given"
            )
        );
        assert_eq!(
            l.invoke(c(2, 3), "open", &[], &mut fx),
            err("AttributeError", "'Lock' object has no attribute 'open'")
        );
        assert_eq!(
            Lock::from_args(&[v(1)]).unwrap_err().message,
            "Lock() takes 0 positional arguments but 1 was given"
        );
    }

    #[test]
    fn non_blocking_and_self_deadlock() {
        let mut l = Lock::default();
        let mut fx = Effects::default();
        assert_eq!(l.invoke(c(1, 1), "acquire", &[v(false)], &mut fx), ok(true));
        assert_eq!(
            l.invoke(c(2, 1), "acquire", &[v(false)], &mut fx),
            ok(false)
        );
        assert_eq!(l.invoke(c(1, 2), "acquire", &[v(0)], &mut fx), ok(false));
        // The holder blocks on its own lock, as Python's Lock would.
        assert_eq!(l.invoke(c(1, 3), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(l.repr(), "<DLock owner=1>");
    }

    #[test]
    fn fifo_hand_off_across_sessions() {
        let mut l = Lock::default();
        let mut fx = Effects::default();
        l.invoke(c(1, 1), "acquire", &[], &mut fx);
        assert_eq!(l.invoke(c(3, 1), "acquire", &[], &mut fx), Outcome::Parked);
        assert_eq!(l.invoke(c(2, 1), "acquire", &[], &mut fx), Outcome::Parked);
        l.invoke(c(1, 2), "release", &[], &mut fx);
        // Granted later: None too.
        assert_eq!(fx.completed, vec![(c(3, 1), Ok(Value::Nil))]);
        assert_eq!(l.repr(), "<DLock owner=3>");
        let mut fx = Effects::default();
        assert_eq!(
            l.invoke(c(1, 3), "release", &[], &mut fx),
            err("RuntimeError", "cannot release un-acquired lock")
        );
        l.invoke(c(3, 2), "release", &[], &mut fx);
        assert_eq!(fx.completed, vec![(c(2, 1), Ok(Value::Nil))]);
    }

    #[test]
    fn expiry_releases_and_drops_parked() {
        let mut l = Lock::default();
        let mut fx = Effects::default();
        l.invoke(c(1, 1), "acquire", &[], &mut fx);
        l.invoke(c(2, 1), "acquire", &[], &mut fx);
        l.invoke(c(3, 1), "acquire", &[], &mut fx);
        l.session_expired(2, &mut fx);
        assert!(fx.completed.is_empty());
        l.session_expired(1, &mut fx);
        assert_eq!(fx.completed, vec![(c(3, 1), Ok(Value::Nil))]);
        l.invoke(c(4, 1), "acquire", &[], &mut fx);
        assert_eq!(l.drain_parked(), vec![c(4, 1)]);
    }

    #[test]
    fn save_restore() {
        let mut l = Lock::default();
        let mut fx = Effects::default();
        l.invoke(c(1, 1), "acquire", &[], &mut fx);
        l.invoke(c(2, 1), "acquire", &[], &mut fx);
        let mut back = Lock::restore(&l.save().unwrap()).unwrap();
        assert_eq!(back, l);
        // The restored waiter still gets None.
        back.invoke(c(1, 2), "release", &[], &mut fx);
        assert_eq!(fx.completed, vec![(c(2, 1), Ok(Value::Nil))]);
        assert!(Lock::restore(b"junk").is_err());
    }
}
