//! The lock core shared by Lock, RLock and Condition: a lock owned by a client session,
//! with a recursion count and a FIFO queue of parked acquires.
//!
//! Release hands the lock straight to the first waiter (its call completes with `true`), so
//! a waiter can never be overtaken by a later caller. Each waiter carries the count it takes
//! over: 1 for a plain acquire, the saved recursion depth for a Condition waiter that was
//! notified and is re-acquiring.

use super::args::{arity, opt_bool};
use super::{CallId, Effects, ObjectError, Outcome};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A parked acquire and the recursion count it will hold once granted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub call: CallId,
    pub count: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionLock {
    /// `None` exactly when `count` is 0.
    owner: Option<SessionId>,
    count: u64,
    queue: VecDeque<Waiter>,
}

/// Why a release was refused; each lock type words it its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotOwner {
    /// Nobody holds the lock.
    Unlocked,
    /// Another session holds it.
    OtherSession,
}

impl SessionLock {
    pub fn owner(&self) -> Option<SessionId> {
        self.owner
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn locked(&self) -> bool {
        self.owner.is_some()
    }

    pub fn is_owned_by(&self, session: SessionId) -> bool {
        self.owner == Some(session)
    }

    /// `acquire(blocking)`. A reentrant lock counts a repeated acquire by its owner; a plain
    /// lock makes the owner wait like anyone else, as Python's `Lock` deadlocks its holder.
    pub fn acquire(&mut self, call: CallId, blocking: bool, reentrant: bool) -> Outcome {
        match self.owner {
            None => {
                self.owner = Some(call.session);
                self.count = 1;
                Outcome::Done(Ok(Value::Boolean(true)))
            }
            Some(owner) if reentrant && owner == call.session => match self.count.checked_add(1) {
                Some(count) => {
                    self.count = count;
                    Outcome::Done(Ok(Value::Boolean(true)))
                }
                None => Outcome::Done(Err(ObjectError::new(
                    "OverflowError",
                    "lock recursion count overflow",
                ))),
            },
            Some(_) if !blocking => Outcome::Done(Ok(Value::Boolean(false))),
            Some(_) => {
                self.queue.push_back(Waiter { call, count: 1 });
                Outcome::Parked
            }
        }
    }

    /// The `acquire(blocking=True)` method of Lock and RLock: checks the arguments, then
    /// [`SessionLock::acquire`]s.
    pub fn acquire_call(
        &mut self,
        call: CallId,
        args: &[Value],
        reentrant: bool,
    ) -> Result<Outcome, ObjectError> {
        arity("acquire", args, &["blocking"], 0)?;
        Ok(self.acquire(call, opt_bool(args, 0, true), reentrant))
    }

    /// The `release()` method of Lock and RLock: checks the arguments, then releases one
    /// level held by the calling session; `refused` words the error when it holds none.
    pub fn release_call(
        &mut self,
        call: CallId,
        args: &[Value],
        fx: &mut Effects,
        refused: fn(NotOwner) -> ObjectError,
    ) -> Result<Outcome, ObjectError> {
        arity("release", args, &[], 0)?;
        self.release(call.session, fx).map_err(refused)?;
        Ok(Outcome::Done(Ok(Value::Nil)))
    }

    /// Queues a call that will take the lock over with `count` (a notified Condition
    /// waiter), or grants it at once when the lock is free.
    pub fn enqueue(&mut self, waiter: Waiter, fx: &mut Effects) {
        self.queue.push_back(waiter);
        if self.owner.is_none() {
            self.hand_off(fx);
        }
    }

    /// Releases one level held by `session`; the last level hands the lock on.
    pub fn release(&mut self, session: SessionId, fx: &mut Effects) -> Result<(), NotOwner> {
        self.check_owner(session)?;
        self.count = self.count.saturating_sub(1);
        if self.count == 0 {
            self.hand_off(fx);
        }
        Ok(())
    }

    /// Releases every level held by `session` and returns how many there were (Condition
    /// wait remembers it).
    pub fn release_all(&mut self, session: SessionId, fx: &mut Effects) -> Result<u64, NotOwner> {
        self.check_owner(session)?;
        let count = self.count;
        self.count = 0;
        self.hand_off(fx);
        Ok(count)
    }

    fn check_owner(&self, session: SessionId) -> Result<(), NotOwner> {
        match self.owner {
            None => Err(NotOwner::Unlocked),
            Some(owner) if owner != session => Err(NotOwner::OtherSession),
            Some(_) => Ok(()),
        }
    }

    /// The lock is free: the first waiter, if any, takes it with its count.
    fn hand_off(&mut self, fx: &mut Effects) {
        self.owner = None;
        self.count = 0;
        if let Some(next) = self.queue.pop_front() {
            self.owner = Some(next.call.session);
            self.count = next.count.max(1);
            fx.complete(next.call, Ok(Value::Boolean(true)));
        }
    }

    /// Drops the session's parked acquires, then frees the lock if it held it, so it cannot
    /// be handed to a call of the session that is gone.
    pub fn session_expired(&mut self, session: SessionId, fx: &mut Effects) {
        self.queue.retain(|w| w.call.session != session);
        if self.owner == Some(session) {
            self.hand_off(fx);
        }
    }

    /// Removes every parked acquire.
    pub fn drain(&mut self) -> Vec<CallId> {
        self.queue.drain(..).map(|w| w.call).collect()
    }

    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(session: SessionId, seq: u64) -> CallId {
        CallId { session, seq }
    }

    const T: Outcome = Outcome::Done(Ok(Value::Boolean(true)));

    #[test]
    fn reentrant_counts_and_fifo_hand_off() {
        let mut lock = SessionLock::default();
        let mut fx = Effects::default();
        assert_eq!(lock.acquire(call(1, 1), true, true), T);
        assert_eq!(lock.acquire(call(1, 2), true, true), T);
        assert_eq!(lock.count(), 2);
        assert_eq!(lock.acquire(call(2, 1), true, true), Outcome::Parked);
        assert_eq!(lock.acquire(call(3, 1), true, true), Outcome::Parked);
        assert_eq!(
            lock.acquire(call(4, 1), false, true),
            Outcome::Done(Ok(Value::Boolean(false)))
        );
        assert_eq!(lock.release(2, &mut fx), Err(NotOwner::OtherSession));
        assert_eq!(lock.release(1, &mut fx), Ok(()));
        assert!(fx.completed.is_empty());
        assert_eq!(lock.release(1, &mut fx), Ok(()));
        assert_eq!(fx.completed, vec![(call(2, 1), Ok(Value::Boolean(true)))]);
        assert_eq!(lock.owner(), Some(2));
        assert_eq!(lock.waiting(), 1);
    }

    #[test]
    fn plain_lock_parks_its_own_holder() {
        let mut lock = SessionLock::default();
        assert_eq!(lock.acquire(call(1, 1), true, false), T);
        assert_eq!(lock.acquire(call(1, 2), true, false), Outcome::Parked);
        let mut fx = Effects::default();
        assert_eq!(lock.release(1, &mut fx), Ok(()));
        assert_eq!(fx.completed, vec![(call(1, 2), Ok(Value::Boolean(true)))]);
        assert_eq!(lock.count(), 1);
    }

    #[test]
    fn release_all_and_enqueue_restore_the_count() {
        let mut lock = SessionLock::default();
        let mut fx = Effects::default();
        assert_eq!(lock.release_all(1, &mut fx), Err(NotOwner::Unlocked));
        lock.acquire(call(1, 1), true, true);
        lock.acquire(call(1, 2), true, true);
        assert_eq!(lock.release_all(1, &mut fx), Ok(2));
        assert!(!lock.locked());
        lock.enqueue(
            Waiter {
                call: call(1, 3),
                count: 2,
            },
            &mut fx,
        );
        assert_eq!(lock.owner(), Some(1));
        assert_eq!(lock.count(), 2);
        assert_eq!(fx.completed, vec![(call(1, 3), Ok(Value::Boolean(true)))]);
    }

    #[test]
    fn expiry_skips_the_gone_sessions_waiters() {
        let mut lock = SessionLock::default();
        let mut fx = Effects::default();
        lock.acquire(call(1, 1), true, false);
        lock.acquire(call(1, 2), true, false);
        lock.acquire(call(2, 1), true, false);
        lock.session_expired(1, &mut fx);
        assert_eq!(fx.completed, vec![(call(2, 1), Ok(Value::Boolean(true)))]);
        assert_eq!(lock.owner(), Some(2));
        lock.acquire(call(3, 1), true, false);
        assert_eq!(lock.drain(), vec![call(3, 1)]);
    }
}
