//! `Queue(maxsize=0)`: Python's `queue.Queue` (FIFO; `maxsize <= 0` means unbounded).
//!
//! As in ConCoord 1.1, `get()` on an empty queue raises `Empty` and `put()` on a full one
//! raises `Full`; `get(True)` and `put(item, True)` park until they can finish instead. A put hands its item straight to the oldest parked get,
//! and a get that frees a slot admits the oldest parked put, so waiters are served in order.
//! Timeouts are not offered: a replicated object has no clock.

use super::args::{arity, opt_bool, opt_int, value_at};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Queue {
    /// 0 when unbounded.
    maxsize: u64,
    items: VecDeque<Value>,
    /// Parked gets; only while `items` is empty.
    getters: VecDeque<CallId>,
    /// Parked puts with their items; only while the queue is full.
    putters: VecDeque<(CallId, Value)>,
}

impl Queue {
    pub fn from_args(args: &[Value]) -> Result<Queue, ObjectError> {
        arity("Queue", args, &["maxsize"], 0)?;
        let maxsize = opt_int(args, 0, "maxsize", 0)?;
        Ok(Queue {
            maxsize: u64::try_from(maxsize).unwrap_or(0),
            ..Queue::default()
        })
    }

    pub fn restore(bytes: &[u8]) -> Result<Queue, ObjectError> {
        decode_state(bytes)
    }

    fn full(&self) -> bool {
        self.maxsize > 0 && self.items.len() as u64 >= self.maxsize
    }

    fn put(&mut self, call: CallId, item: Value, block: bool, fx: &mut Effects) -> Outcome {
        if let Some(getter) = self.getters.pop_front() {
            fx.complete(getter, Ok(item));
        } else if !self.full() {
            self.items.push_back(item);
        } else if block {
            self.putters.push_back((call, item));
            return Outcome::Parked;
        } else {
            return Outcome::Done(Err(ObjectError::new("Full", "")));
        }
        Outcome::Done(Ok(Value::Nil))
    }

    fn get(&mut self, call: CallId, block: bool, fx: &mut Effects) -> Outcome {
        if let Some(item) = self.items.pop_front() {
            if !self.full()
                && let Some((putter, waiting)) = self.putters.pop_front()
            {
                self.items.push_back(waiting);
                fx.complete(putter, Ok(Value::Nil));
            }
            Outcome::Done(Ok(item))
        } else if block {
            self.getters.push_back(call);
            Outcome::Parked
        } else {
            Outcome::Done(Err(ObjectError::new("Empty", "")))
        }
    }

    fn dispatch(
        &mut self,
        call: CallId,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        let done = |v: Value| Ok(Outcome::Done(Ok(v)));
        match method {
            "put" => {
                arity(method, args, &["item", "block"], 1)?;
                let item = value_at(args, 0, "item")?;
                Ok(self.put(call, item, opt_bool(args, 1, false), fx))
            }
            "put_nowait" => {
                arity(method, args, &["item"], 1)?;
                let item = value_at(args, 0, "item")?;
                Ok(self.put(call, item, false, fx))
            }
            "get" => {
                arity(method, args, &["block"], 0)?;
                Ok(self.get(call, opt_bool(args, 0, false), fx))
            }
            "get_nowait" => {
                arity(method, args, &[], 0)?;
                Ok(self.get(call, false, fx))
            }
            "qsize" => {
                arity(method, args, &[], 0)?;
                done(Value::from(self.items.len() as u64))
            }
            "empty" => {
                arity(method, args, &[], 0)?;
                done(Value::Boolean(self.items.is_empty()))
            }
            "full" => {
                arity(method, args, &[], 0)?;
                done(Value::Boolean(self.full()))
            }
            _ => Err(ObjectError::no_method(self.type_name(), method)),
        }
    }
}

impl ReplicatedObject for Queue {
    fn type_name(&self) -> &'static str {
        "Queue"
    }

    fn is_read_only(&self, method: &str) -> bool {
        matches!(method, "qsize" | "empty" | "full")
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        Outcome::from_result(self.dispatch(call, method, args, fx))
    }

    /// ConCoord 1.1 printed its `Queue.Queue` with a memory address, which differs on
    /// every replica; we print the same shape with what is deterministic.
    fn describe(&self) -> String {
        format!(
            "<Queue.Queue instance maxsize={} qsize={}>",
            self.maxsize,
            self.items.len()
        )
    }

    fn session_expired(&mut self, session: SessionId, _fx: &mut Effects) {
        self.getters.retain(|c| c.session != session);
        self.putters.retain(|(c, _)| c.session != session);
    }

    fn drain_parked(&mut self) -> Vec<CallId> {
        let mut parked: Vec<CallId> = self.getters.drain(..).collect();
        parked.extend(self.putters.drain(..).map(|(c, _)| c));
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

    #[test]
    fn fifo_put_get_and_sizes() {
        let mut q = Queue::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(q.invoke(c(1, 1), "empty", &[], &mut fx), ok(true));
        assert_eq!(q.invoke(c(1, 2), "put", &[v("a")], &mut fx), ok(Value::Nil));
        assert_eq!(
            q.invoke(c(1, 3), "put_nowait", &[v(2)], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(q.invoke(c(1, 4), "qsize", &[], &mut fx), ok(2));
        assert_eq!(q.invoke(c(1, 5), "full", &[], &mut fx), ok(false));
        assert_eq!(q.describe(), "<Queue.Queue instance maxsize=0 qsize=2>");
        assert_eq!(q.invoke(c(1, 6), "get", &[], &mut fx), ok("a"));
        assert_eq!(q.invoke(c(1, 7), "get_nowait", &[], &mut fx), ok(2));
        assert_eq!(q.invoke(c(1, 8), "empty", &[], &mut fx), ok(true));
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn empty_and_full_errors() {
        let mut q = Queue::from_args(&[v(1)]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(
            q.invoke(c(1, 1), "get", &[v(false)], &mut fx),
            err("Empty", "")
        );
        assert_eq!(
            q.invoke(c(1, 2), "get_nowait", &[], &mut fx),
            err("Empty", "")
        );
        q.invoke(c(1, 3), "put", &[v(1)], &mut fx);
        assert_eq!(q.invoke(c(1, 4), "full", &[], &mut fx), ok(true));
        assert_eq!(
            q.invoke(c(1, 5), "put", &[v(2), v(false)], &mut fx),
            err("Full", "")
        );
        assert_eq!(
            q.invoke(c(1, 6), "put_nowait", &[v(2)], &mut fx),
            err("Full", "")
        );
        assert_eq!(
            q.invoke(c(1, 7), "put", &[], &mut fx),
            err(
                "TypeError",
                "put() missing 1 required positional argument: 'item'"
            )
        );
        assert_eq!(
            q.invoke(c(1, 8), "get", &[v(true), v(1)], &mut fx),
            err(
                "TypeError",
                "get() takes from 0 to 1 positional arguments but 2 were given"
            )
        );
        assert_eq!(
            q.invoke(c(1, 9), "append", &[v(1)], &mut fx),
            err("AttributeError", "'Queue' object has no attribute 'append'")
        );
        assert_eq!(Queue::from_args(&[v("x")]).unwrap_err().kind, "TypeError");
    }

    #[test]
    fn blocking_get_is_fed_by_put_in_order() {
        let mut q = Queue::default();
        let mut fx = Effects::default();
        assert_eq!(
            q.invoke(c(1, 1), "get", &[v(true)], &mut fx),
            Outcome::Parked
        );
        assert_eq!(
            q.invoke(c(2, 1), "get", &[v(true)], &mut fx),
            Outcome::Parked
        );
        q.invoke(c(3, 1), "put", &[v("x"), v(true)], &mut fx);
        q.invoke(c(3, 2), "put", &[v("y"), v(true)], &mut fx);
        q.invoke(c(3, 3), "put", &[v("z"), v(true)], &mut fx);
        assert_eq!(
            fx.completed,
            vec![(c(1, 1), Ok(v("x"))), (c(2, 1), Ok(v("y")))]
        );
        assert_eq!(q.invoke(c(3, 4), "qsize", &[], &mut fx), ok(1));
    }

    #[test]
    fn blocking_put_waits_for_space() {
        let mut q = Queue::from_args(&[v(2)]).unwrap();
        let mut fx = Effects::default();
        q.invoke(c(1, 1), "put", &[v(1), v(true)], &mut fx);
        q.invoke(c(1, 2), "put", &[v(2), v(true)], &mut fx);
        assert_eq!(
            q.invoke(c(2, 1), "put", &[v(3), v(true)], &mut fx),
            Outcome::Parked
        );
        assert_eq!(
            q.invoke(c(3, 1), "put", &[v(4), v(true)], &mut fx),
            Outcome::Parked
        );
        assert_eq!(q.invoke(c(4, 1), "get", &[v(true)], &mut fx), ok(1));
        assert_eq!(fx.completed, vec![(c(2, 1), Ok(Value::Nil))]);
        assert_eq!(q.describe(), "<Queue.Queue instance maxsize=2 qsize=2>");
        assert_eq!(q.invoke(c(4, 2), "get", &[v(true)], &mut fx), ok(2));
        assert_eq!(q.invoke(c(4, 3), "get", &[v(true)], &mut fx), ok(3));
        assert_eq!(q.invoke(c(4, 4), "get", &[v(true)], &mut fx), ok(4));
        assert_eq!(fx.completed.len(), 2);
    }

    #[test]
    fn get_and_put_do_not_block_by_default_as_in_concoord_11() {
        let mut q = Queue::from_args(&[v(1)]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(q.invoke(c(1, 1), "get", &[], &mut fx), err("Empty", ""));
        assert_eq!(q.invoke(c(1, 2), "put", &[v(1)], &mut fx), ok(Value::Nil));
        assert_eq!(q.invoke(c(1, 3), "put", &[v(2)], &mut fx), err("Full", ""));
        assert_eq!(q.invoke(c(1, 4), "get", &[], &mut fx), ok(1));
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn negative_maxsize_is_unbounded() {
        let mut q = Queue::from_args(&[v(-3)]).unwrap();
        let mut fx = Effects::default();
        for i in 0..5 {
            assert_eq!(q.invoke(c(1, i), "put", &[v(i)], &mut fx), ok(Value::Nil));
        }
        assert_eq!(q.invoke(c(1, 9), "full", &[], &mut fx), ok(false));
    }

    #[test]
    fn expiry_drops_parked_calls() {
        let mut q = Queue::from_args(&[v(1)]).unwrap();
        let mut fx = Effects::default();
        q.invoke(c(1, 1), "put", &[v(1), v(true)], &mut fx);
        q.invoke(c(2, 1), "put", &[v(2), v(true)], &mut fx);
        q.invoke(c(3, 1), "put", &[v(3), v(true)], &mut fx);
        q.session_expired(2, &mut fx);
        q.invoke(c(4, 1), "get", &[v(true)], &mut fx);
        assert_eq!(fx.completed, vec![(c(3, 1), Ok(Value::Nil))]);
        let mut e = Queue::default();
        e.invoke(c(1, 1), "get", &[v(true)], &mut fx);
        e.invoke(c(2, 1), "get", &[v(true)], &mut fx);
        e.session_expired(1, &mut fx);
        let mut fx = Effects::default();
        e.invoke(c(3, 1), "put", &[v("a"), v(true)], &mut fx);
        assert_eq!(fx.completed, vec![(c(2, 1), Ok(v("a")))]);
    }

    #[test]
    fn save_restore_and_drain() {
        let mut q = Queue::from_args(&[v(1)]).unwrap();
        let mut fx = Effects::default();
        q.invoke(c(1, 1), "put", &[v(1), v(true)], &mut fx);
        q.invoke(
            c(2, 1),
            "put",
            &[Value::Binary(vec![1, 2]), v(true)],
            &mut fx,
        );
        let mut back = Queue::restore(&q.save().unwrap()).unwrap();
        assert_eq!(back, q);
        assert_eq!(back.drain_parked(), vec![c(2, 1)]);
        let mut g = Queue::default();
        g.invoke(c(3, 1), "get", &[v(true)], &mut fx);
        assert_eq!(g.drain_parked(), vec![c(3, 1)]);
    }
}
