//! The lock core shared by Lock, RLock and Condition: a lock owned by a client session,
//! with a recursion count and a FIFO queue of parked acquires.
//!
//! Release hands the lock straight to the first waiter, so a waiter can never be overtaken
//! by a later caller. Each waiter carries the count it takes over (1 for a plain acquire, the
//! saved recursion depth for a Condition waiter that was notified and is re-acquiring) and
//! the value its call returns once granted.
//!
//! What an acquire returns follows ConCoord 1.1 ([`Flavor::granted`]): its Lock and
//! Condition return None, its RLock True, and 1 for a reentrant acquire. The non-blocking
//! `acquire(False)`, our extension, answers True or False on every type (1 when reentrant
//! on an RLock).

use super::args::{arity, opt_bool};
use super::{CallId, Effects, ObjectError, Outcome};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The value a granted acquire returns.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reply {
    /// `True` (the default: what every waiter returned before replies were per type).
    #[default]
    True,
    /// `None`.
    Nil,
    /// The integer 1 (ConCoord 1.1's RLock, reacquired by its owner).
    One,
}

impl Reply {
    pub fn value(self) -> Value {
        match self {
            Reply::True => Value::Boolean(true),
            Reply::Nil => Value::Nil,
            Reply::One => Value::from(1),
        }
    }
}

/// Which lock type a [`SessionLock`] call is made for: it decides whether the owner may
/// acquire again, and what a granted acquire returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Not reentrant: the owner waits like anyone else, as Python's `Lock` deadlocks.
    Lock,
    RLock,
    /// The RLock inside a Condition.
    Condition,
}

impl Flavor {
    pub fn reentrant(self) -> bool {
        !matches!(self, Flavor::Lock)
    }

    /// What an acquire returns once it holds the lock: `blocking` as asked, `again` when
    /// its session already held it (a reentrant acquire). A parked acquire is blocking and
    /// not reentrant, and returns the same whether granted at once or later.
    pub fn granted(self, blocking: bool, again: bool) -> Reply {
        match self {
            Flavor::RLock if again => Reply::One,
            Flavor::RLock => Reply::True,
            Flavor::Lock | Flavor::Condition if blocking => Reply::Nil,
            Flavor::Lock | Flavor::Condition => Reply::True,
        }
    }
}

/// A parked acquire, the recursion count it will hold once granted and what it returns then.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub call: CallId,
    pub count: u64,
    #[serde(default)]
    pub reply: Reply,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionLock {
    /// `None` exactly when `count` is 0.
    owner: Option<SessionId>,
    count: u64,
    queue: VecDeque<Waiter>,
}

/// A release (or wait) refused: the calling session does not hold the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotOwner;

/// Python's error for releasing a lock the caller does not hold (Lock, RLock, Condition).
pub fn not_acquired() -> ObjectError {
    ObjectError::runtime("cannot release un-acquired lock")
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

    /// `acquire(blocking)` for a lock of `flavor`: a reentrant flavor counts a repeated
    /// acquire by its owner; a plain lock makes the owner wait like anyone else.
    pub fn acquire(&mut self, call: CallId, blocking: bool, flavor: Flavor) -> Outcome {
        let granted = |again| Outcome::Done(Ok(flavor.granted(blocking, again).value()));
        match self.owner {
            None => {
                self.owner = Some(call.session);
                self.count = 1;
                granted(false)
            }
            Some(owner) if flavor.reentrant() && owner == call.session => {
                match self.count.checked_add(1) {
                    Some(count) => {
                        self.count = count;
                        granted(true)
                    }
                    None => Outcome::Done(Err(ObjectError::new(
                        "OverflowError",
                        "lock recursion count overflow",
                    ))),
                }
            }
            Some(_) if !blocking => Outcome::Done(Ok(Value::Boolean(false))),
            Some(_) => {
                self.queue.push_back(Waiter {
                    call,
                    count: 1,
                    reply: flavor.granted(true, false),
                });
                Outcome::Parked
            }
        }
    }

    /// The `acquire(blocking=True)` method of Lock, RLock and Condition: checks the
    /// arguments, then [`SessionLock::acquire`]s.
    pub fn acquire_call(
        &mut self,
        call: CallId,
        args: &[Value],
        flavor: Flavor,
    ) -> Result<Outcome, ObjectError> {
        arity("acquire", args, &["blocking"], 0)?;
        Ok(self.acquire(call, opt_bool(args, 0, true), flavor))
    }

    /// The `release()` method of Lock, RLock and Condition: checks the arguments, then
    /// releases one level held by the calling session; returns None.
    pub fn release_call(
        &mut self,
        call: CallId,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        arity("release", args, &[], 0)?;
        self.release(call.session, fx)
            .map_err(|NotOwner| not_acquired())?;
        Ok(Outcome::Done(Ok(Value::Nil)))
    }

    /// Queues a call that will take the lock over with its count (a notified Condition
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
        if self.is_owned_by(session) {
            Ok(())
        } else {
            Err(NotOwner)
        }
    }

    /// The lock is free: the first waiter, if any, takes it with its count, and its call
    /// completes with its reply.
    fn hand_off(&mut self, fx: &mut Effects) {
        self.owner = None;
        self.count = 0;
        if let Some(next) = self.queue.pop_front() {
            self.owner = Some(next.call.session);
            self.count = next.count.max(1);
            fx.complete(next.call, Ok(next.reply.value()));
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

    fn done(v: impl Into<Value>) -> Outcome {
        Outcome::Done(Ok(v.into()))
    }

    #[test]
    fn reentrant_counts_and_fifo_hand_off() {
        let mut lock = SessionLock::default();
        let mut fx = Effects::default();
        let rl = Flavor::RLock;
        assert_eq!(lock.acquire(call(1, 1), true, rl), done(true));
        assert_eq!(lock.acquire(call(1, 2), true, rl), done(1));
        assert_eq!(lock.acquire(call(1, 3), false, rl), done(1));
        assert_eq!(lock.count(), 3);
        assert_eq!(lock.acquire(call(2, 1), true, rl), Outcome::Parked);
        assert_eq!(lock.acquire(call(3, 1), true, rl), Outcome::Parked);
        assert_eq!(lock.acquire(call(4, 1), false, rl), done(false));
        assert_eq!(lock.release(2, &mut fx), Err(NotOwner));
        assert_eq!(lock.release(1, &mut fx), Ok(()));
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
        assert_eq!(
            lock.acquire(call(1, 1), true, Flavor::Lock),
            done(Value::Nil)
        );
        assert_eq!(
            lock.acquire(call(1, 2), true, Flavor::Lock),
            Outcome::Parked
        );
        assert_eq!(lock.acquire(call(1, 3), false, Flavor::Lock), done(false));
        let mut fx = Effects::default();
        assert_eq!(lock.release(1, &mut fx), Ok(()));
        assert_eq!(fx.completed, vec![(call(1, 2), Ok(Value::Nil))]);
        assert_eq!(lock.count(), 1);
        assert_eq!(lock.release(1, &mut fx), Ok(()));
        assert_eq!(lock.acquire(call(2, 1), false, Flavor::Lock), done(true));
    }

    #[test]
    fn replies_per_flavor() {
        for (flavor, blocking, again, reply) in [
            (Flavor::Lock, true, false, Reply::Nil),
            (Flavor::Lock, false, false, Reply::True),
            (Flavor::RLock, true, false, Reply::True),
            (Flavor::RLock, false, false, Reply::True),
            (Flavor::RLock, true, true, Reply::One),
            (Flavor::RLock, false, true, Reply::One),
            (Flavor::Condition, true, false, Reply::Nil),
            (Flavor::Condition, true, true, Reply::Nil),
            (Flavor::Condition, false, false, Reply::True),
            (Flavor::Condition, false, true, Reply::True),
        ] {
            assert_eq!(
                flavor.granted(blocking, again),
                reply,
                "{flavor:?} {blocking} {again}"
            );
        }
        assert_eq!(Reply::One.value(), Value::from(1));
        assert_eq!(Reply::Nil.value(), Value::Nil);
        assert_eq!(Reply::default().value(), Value::Boolean(true));
    }

    #[test]
    fn release_all_and_enqueue_restore_the_count() {
        let mut lock = SessionLock::default();
        let mut fx = Effects::default();
        assert_eq!(lock.release_all(1, &mut fx), Err(NotOwner));
        lock.acquire(call(1, 1), true, Flavor::Condition);
        lock.acquire(call(1, 2), true, Flavor::Condition);
        assert_eq!(lock.release_all(1, &mut fx), Ok(2));
        assert!(!lock.locked());
        lock.enqueue(
            Waiter {
                call: call(1, 3),
                count: 2,
                reply: Reply::Nil,
            },
            &mut fx,
        );
        assert_eq!(lock.owner(), Some(1));
        assert_eq!(lock.count(), 2);
        assert_eq!(fx.completed, vec![(call(1, 3), Ok(Value::Nil))]);
    }

    #[test]
    fn expiry_skips_the_gone_sessions_waiters() {
        let mut lock = SessionLock::default();
        let mut fx = Effects::default();
        lock.acquire(call(1, 1), true, Flavor::Lock);
        lock.acquire(call(1, 2), true, Flavor::Lock);
        lock.acquire(call(2, 1), true, Flavor::Lock);
        lock.session_expired(1, &mut fx);
        assert_eq!(fx.completed, vec![(call(2, 1), Ok(Value::Nil))]);
        assert_eq!(lock.owner(), Some(2));
        lock.acquire(call(3, 1), true, Flavor::Lock);
        assert_eq!(lock.drain(), vec![call(3, 1)]);
    }

    #[test]
    fn a_waiter_saved_without_a_reply_returns_true() {
        #[derive(Serialize)]
        struct OldWaiter {
            call: CallId,
            count: u64,
        }
        let bytes = rmp_serde::to_vec_named(&OldWaiter {
            call: call(1, 1),
            count: 1,
        })
        .unwrap();
        let back: Waiter = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.reply, Reply::True);
    }
}
