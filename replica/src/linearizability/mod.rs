//! Linearizability checking of recorded histories: Wing & Gong's search for a legal order,
//! with Lowe's memoization of (calls placed so far, model state), against sequential models
//! of Counter, Dict, Queue, Lock and Semaphore.
//!
//! A history holds calls, each with the time it was invoked and, if it returned, the time
//! and outcome of the return. It is linearizable when every call that returned can be given
//! a point inside its [invoke, return] window such that, in that order, the sequential model
//! of the object produces exactly the outcomes the clients saw. A call that never returned
//! (the client gave up, or crashed) may take effect at any point after its invocation, or
//! never: its return is at +infinity.
//!
//! Calls on different objects, and on different keys of a Dict, are independent, so each
//! group is checked on its own (P-compositionality); that keeps long histories fast.
//!
//! Times are plain `u64`s in any unit that only grows (the [`Recorder`] uses microseconds
//! of an `Instant`, the simulator virtual microseconds). Equal times count as concurrent.

mod model;
mod recorder;
mod search;
#[cfg(test)]
mod tests;

pub use recorder::Recorder;

use crate::command::{Operation, Value};
use crate::net::wire::ReplyResult;
use model::{Kind, State};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A value as the models see it (arguments and results).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    /// Any other msgpack value, by its Python repr (compared as text).
    Other(String),
}

impl Val {
    pub fn from_value(v: &Value) -> Val {
        match v {
            Value::Nil => Val::Nil,
            Value::Boolean(b) => Val::Bool(*b),
            Value::Integer(i) => match i.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Other(i.to_string()),
            },
            Value::String(s) => match s.as_str() {
                Some(s) => Val::Str(s.to_string()),
                None => Val::Other(crate::object::args::py_repr(v)),
            },
            other => Val::Other(crate::object::args::py_repr(other)),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Val::Nil => Value::Nil,
            Val::Bool(b) => Value::Boolean(*b),
            Val::Int(i) => Value::from(*i),
            Val::Str(s) | Val::Other(s) => Value::from(s.as_str()),
        }
    }
}

impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}

impl From<bool> for Val {
    fn from(b: bool) -> Val {
        Val::Bool(b)
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Str(s.to_string())
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Nil => write!(f, "None"),
            Val::Bool(true) => write!(f, "True"),
            Val::Bool(false) => write!(f, "False"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Str(s) => write!(f, "{s:?}"),
            Val::Other(s) => write!(f, "{s}"),
        }
    }
}

/// What a call returned: a value, or the name of the Python exception it raised
/// ("KeyError", "Empty", "Full", "RuntimeError", ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok(Val),
    Err(String),
}

impl Outcome {
    /// The outcome a replica's reply carries, or None when the reply says nothing about the
    /// call (not the leader, session gone, unavailable): the client retries or gives up.
    /// A `SessionExpired` reply to a retry does not say whether the first try took effect.
    pub fn from_reply(reply: &ReplyResult) -> Option<Outcome> {
        match reply {
            ReplyResult::Ok(v) => Some(Outcome::Ok(Val::from_value(v))),
            ReplyResult::Err { kind, .. } => Some(Outcome::Err(kind.clone())),
            ReplyResult::NotLeader { .. }
            | ReplyResult::SessionExpired
            | ReplyResult::Unavailable { .. } => None,
        }
    }

    pub fn ok(v: impl Into<Val>) -> Outcome {
        Outcome::Ok(v.into())
    }

    pub fn none() -> Outcome {
        Outcome::Ok(Val::Nil)
    }

    pub fn err(kind: &str) -> Outcome {
        Outcome::Err(kind.to_string())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(v) => write!(f, "{v}"),
            Outcome::Err(kind) => write!(f, "raises {kind}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterCall {
    Increment,
    Decrement,
    GetValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DictCall {
    /// `get(key)`: the value, or None when absent.
    Get {
        key: String,
    },
    Set {
        key: String,
        value: Val,
    },
    /// Raises KeyError when absent.
    Delete {
        key: String,
    },
    /// `cas(key, expected, new)`: `expected` None means "absent".
    Cas {
        key: String,
        expected: Val,
        new: Val,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueCall {
    /// Non-blocking on a full queue raises Full.
    Put { item: Val, block: bool },
    /// Non-blocking on an empty queue raises Empty.
    Get { block: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockCall {
    /// A blocking acquire returns None, and only once granted (ConCoord 1.1's Lock); a
    /// non-blocking one returns True when granted, False otherwise.
    Acquire {
        blocking: bool,
    },
    Release,
    Locked,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SemaphoreCall {
    Acquire { blocking: bool },
    Release { n: u64 },
}

/// One call a client makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Counter(CounterCall),
    Dict(DictCall),
    Queue(QueueCall),
    Lock(LockCall),
    Semaphore(SemaphoreCall),
    /// The client's session ended (closed, or expired by its lease): every lock and permit
    /// it held is released and it makes no more calls. It concerns every Lock and
    /// Semaphore, whatever the op's object.
    EndSession,
}

/// A call on a named object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub object: String,
    pub call: Call,
}

impl Op {
    pub fn new(object: &str, call: Call) -> Op {
        Op {
            object: object.to_string(),
            call,
        }
    }

    pub fn counter(object: &str, call: CounterCall) -> Op {
        Op::new(object, Call::Counter(call))
    }

    pub fn dict(object: &str, call: DictCall) -> Op {
        Op::new(object, Call::Dict(call))
    }

    pub fn queue(object: &str, call: QueueCall) -> Op {
        Op::new(object, Call::Queue(call))
    }

    pub fn lock(object: &str, call: LockCall) -> Op {
        Op::new(object, Call::Lock(call))
    }

    pub fn semaphore(object: &str, call: SemaphoreCall) -> Op {
        Op::new(object, Call::Semaphore(call))
    }

    pub fn end_session() -> Op {
        Op::new("", Call::EndSession)
    }

    /// The command a client sends for this call (values other than None, booleans, ints
    /// and strings travel as their repr).
    pub fn operation(&self) -> Operation {
        let call = |method: &str, args: Vec<Value>| Operation::Call {
            object: self.object.clone(),
            method: method.to_string(),
            args,
        };
        let s = |k: &str| Value::from(k);
        match &self.call {
            Call::Counter(CounterCall::Increment) => call("increment", vec![]),
            Call::Counter(CounterCall::Decrement) => call("decrement", vec![]),
            Call::Counter(CounterCall::GetValue) => call("getvalue", vec![]),
            Call::Dict(DictCall::Get { key }) => call("get", vec![s(key)]),
            Call::Dict(DictCall::Set { key, value }) => call("set", vec![s(key), value.to_value()]),
            Call::Dict(DictCall::Delete { key }) => call("delete", vec![s(key)]),
            Call::Dict(DictCall::Cas { key, expected, new }) => {
                call("cas", vec![s(key), expected.to_value(), new.to_value()])
            }
            Call::Queue(QueueCall::Put { item, block }) => {
                call("put", vec![item.to_value(), Value::Boolean(*block)])
            }
            Call::Queue(QueueCall::Get { block }) => call("get", vec![Value::Boolean(*block)]),
            Call::Lock(LockCall::Acquire { blocking })
            | Call::Semaphore(SemaphoreCall::Acquire { blocking }) => {
                call("acquire", vec![Value::Boolean(*blocking)])
            }
            Call::Lock(LockCall::Release) => call("release", vec![]),
            Call::Lock(LockCall::Locked) => call("locked", vec![]),
            Call::Semaphore(SemaphoreCall::Release { n }) => call("release", vec![Value::from(*n)]),
            Call::EndSession => Operation::CloseSession,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.object;
        let py = |b: &bool| if *b { "True" } else { "False" };
        match &self.call {
            Call::Counter(CounterCall::Increment) => write!(f, "{o}.increment()"),
            Call::Counter(CounterCall::Decrement) => write!(f, "{o}.decrement()"),
            Call::Counter(CounterCall::GetValue) => write!(f, "{o}.getvalue()"),
            Call::Dict(DictCall::Get { key }) => write!(f, "{o}.get({key:?})"),
            Call::Dict(DictCall::Set { key, value }) => write!(f, "{o}.set({key:?}, {value})"),
            Call::Dict(DictCall::Delete { key }) => write!(f, "{o}.delete({key:?})"),
            Call::Dict(DictCall::Cas { key, expected, new }) => {
                write!(f, "{o}.cas({key:?}, {expected}, {new})")
            }
            Call::Queue(QueueCall::Put { item, block }) => {
                write!(f, "{o}.put({item}, block={})", py(block))
            }
            Call::Queue(QueueCall::Get { block }) => write!(f, "{o}.get(block={})", py(block)),
            Call::Lock(LockCall::Acquire { blocking })
            | Call::Semaphore(SemaphoreCall::Acquire { blocking }) => {
                write!(f, "{o}.acquire(blocking={})", py(blocking))
            }
            Call::Lock(LockCall::Release) => write!(f, "{o}.release()"),
            Call::Lock(LockCall::Locked) => write!(f, "{o}.locked()"),
            Call::Semaphore(SemaphoreCall::Release { n }) => write!(f, "{o}.release({n})"),
            Call::EndSession => write!(f, "<session ends>"),
        }
    }
}

/// How an object starts, when it does not start like its constructor's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectSpec {
    /// A counter starting at `value` that moves by `step` (1 for the built-in Counter, 10
    /// for the seed's user-defined TenCounter).
    Counter {
        value: i64,
        step: i64,
    },
    Dict,
    /// 0: unbounded.
    Queue {
        maxsize: u64,
    },
    Lock,
    Semaphore {
        count: u64,
    },
}

/// Names one call of a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub usize);

/// One call: who made it, what, when, and how it ended (None: it never returned).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The client's session: owner of the locks and permits it acquires.
    pub client: u64,
    pub op: Op,
    pub invoke: u64,
    pub ret: Option<(u64, Outcome)>,
}

/// Calls on replicated objects, in the order they were invoked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    entries: Vec<Entry>,
    objects: BTreeMap<String, ObjectSpec>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Says how `object` starts (by default: Counter 0, empty Dict, unbounded empty Queue,
    /// free Lock, Semaphore with 1 permit).
    pub fn declare(&mut self, object: &str, spec: ObjectSpec) {
        self.objects.insert(object.to_string(), spec);
    }

    pub fn invoke(&mut self, client: u64, op: Op, at: u64) -> CallId {
        self.entries.push(Entry {
            client,
            op,
            invoke: at,
            ret: None,
        });
        CallId(self.entries.len() - 1)
    }

    /// Records the return of `id`; a second return of the same call is ignored.
    pub fn ret(&mut self, id: CallId, at: u64, outcome: Outcome) {
        if let Some(e) = self.entries.get_mut(id.0)
            && e.ret.is_none()
        {
            e.ret = Some((at.max(e.invoke), outcome));
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One line per call, for traces and failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, e) in self.entries.iter().enumerate() {
            out.push_str(&describe_entry(i, e));
            out.push('\n');
        }
        out
    }
}

fn fmt_time(t: u64) -> String {
    format!("{}.{:03}ms", t / 1000, t % 1000)
}

/// Sessions are random 64-bit numbers: the low 16 bits, in hex, tell them apart (as in the
/// simulator's traces).
pub(crate) fn short_session(s: u64) -> String {
    format!("{:04x}", s & 0xffff)
}

fn describe_entry(i: usize, e: &Entry) -> String {
    let (out, ret) = match &e.ret {
        Some((t, o)) => (o.to_string(), format!("returned {}", fmt_time(*t))),
        None => ("?".to_string(), "never returned".to_string()),
    };
    format!(
        "#{i} session {}: {} -> {out}   (invoked {}, {ret})",
        short_session(e.client),
        e.op,
        fmt_time(e.invoke)
    )
}

#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Sessions may end without the history saying so (a lease ran out while nobody
    /// watched): every session seen on a Lock or Semaphore without an `EndSession` call
    /// gets one that never returned, invoked with its first call there.
    pub implicit_session_ends: bool,
    /// Search steps per object before giving up.
    pub max_steps: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            implicit_session_ends: true,
            max_steps: 20_000_000,
        }
    }
}

/// Why a history is not (known to be) linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// No order of the calls on `partition` fits the model.
    NotLinearizable {
        partition: String,
        explanation: String,
    },
    /// The search gave up after `steps` steps on `partition` (too much concurrency).
    TooHard { partition: String, steps: u64 },
    /// The history itself is inconsistent (one object used as two types, say).
    Malformed(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotLinearizable {
                partition,
                explanation,
            } => write!(f, "{partition} is not linearizable:\n{explanation}"),
            Violation::TooHard { partition, steps } => write!(
                f,
                "gave up checking {partition} after {steps} search steps (too many concurrent calls)"
            ),
            Violation::Malformed(why) => write!(f, "malformed history: {why}"),
        }
    }
}

impl std::error::Error for Violation {}

/// Checks `history` with the default options.
pub fn check(history: &History) -> Result<(), Violation> {
    check_with(history, &CheckOptions::default())
}

/// A group of calls checked together, and the model they are checked against.
struct Partition {
    kind: Kind,
    init: State,
    /// Indexes into the history's entries, plus implicit session ends (client, invoke).
    calls: Vec<usize>,
    implicit_ends: Vec<(u64, u64)>,
}

pub fn check_with(history: &History, opts: &CheckOptions) -> Result<(), Violation> {
    let mut parts: BTreeMap<String, Partition> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
    let mut session_ends: Vec<usize> = Vec::new();
    for (i, e) in history.entries.iter().enumerate() {
        let Some(kind) = Kind::of(&e.op.call) else {
            session_ends.push(i);
            continue;
        };
        match kinds.get(e.op.object.as_str()) {
            Some(k) if k.name() != kind.name() => {
                return Err(Violation::Malformed(format!(
                    "object {:?} is called as a {} and as a {} ({})",
                    e.op.object,
                    k.name(),
                    kind.name(),
                    describe_entry(i, e)
                )));
            }
            Some(_) => {}
            None => {
                kinds.insert(&e.op.object, kind);
            }
        }
        let name = match &e.op.call {
            Call::Dict(c) => format!("{}[{:?}]", e.op.object, model::dict_key(c)),
            _ => e.op.object.clone(),
        };
        if !parts.contains_key(&name) {
            let spec = history.objects.get(&e.op.object);
            let (kind, init) = Kind::start(kind, spec)
                .map_err(|why| Violation::Malformed(format!("object {:?}: {why}", e.op.object)))?;
            parts.insert(
                name.clone(),
                Partition {
                    kind,
                    init,
                    calls: Vec::new(),
                    implicit_ends: Vec::new(),
                },
            );
        }
        if let Some(p) = parts.get_mut(&name) {
            p.calls.push(i);
        }
    }
    let ended: BTreeSet<u64> = session_ends
        .iter()
        .map(|&i| history.entries[i].client)
        .collect();
    for p in parts.values_mut() {
        if !p.kind.has_owners() {
            continue;
        }
        // When each session first called this object.
        let mut first: BTreeMap<u64, u64> = BTreeMap::new();
        for &i in &p.calls {
            let e = &history.entries[i];
            let t = first.entry(e.client).or_insert(e.invoke);
            *t = (*t).min(e.invoke);
        }
        // Ends of sessions that never called this object change nothing here.
        p.calls.extend(
            session_ends
                .iter()
                .copied()
                .filter(|&i| first.contains_key(&history.entries[i].client)),
        );
        if opts.implicit_session_ends {
            p.implicit_ends = first
                .into_iter()
                .filter(|(client, _)| !ended.contains(client))
                .collect();
        }
    }
    for (name, p) in &parts {
        search::check_partition(history, name, p, opts.max_steps)?;
    }
    Ok(())
}
