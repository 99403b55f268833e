//! Replicated objects: the live objects clients call, one file per built-in type, and the
//! registry that maps names to objects and type names to constructors.
//!
//! Objects are plain deterministic state machines. A method either finishes at once or parks
//! the call (a lock that is held, a barrier that is not full); a later call that frees the
//! resource completes the parked call through [`Effects`].

use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod args;
pub mod registry;
pub mod sandbox;
pub mod source;
pub mod user;

pub mod bank;
pub mod barrier;
pub mod boundedsemaphore;
pub mod condition;
pub mod counter;
pub mod dict;
pub mod jobmanager;
pub mod lock;
pub mod log;
pub mod membership;
pub mod meshmembership;
pub mod queue;
pub mod rlock;
pub mod semaphore;
pub mod sessionlock;
pub mod stack;

pub use registry::{ObjectType, ObjectTypes, Registry};
pub use user::UserType;

/// Names one client call: the session that made it and its sequence number.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId {
    pub session: SessionId,
    pub seq: u64,
}

/// An error raised by a method, named like the Python exception ConCoord would raise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ObjectError {
    /// Python exception name: "RuntimeError", "ValueError", "KeyError", "IndexError",
    /// "TypeError", "AttributeError", "Empty", "Full", ...
    pub kind: String,
    pub message: String,
}

impl ObjectError {
    pub fn new(kind: &str, message: impl Into<String>) -> ObjectError {
        ObjectError {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> ObjectError {
        ObjectError::new("RuntimeError", message)
    }
    pub fn value(message: impl Into<String>) -> ObjectError {
        ObjectError::new("ValueError", message)
    }
    pub fn type_error(message: impl Into<String>) -> ObjectError {
        ObjectError::new("TypeError", message)
    }
    pub fn key(message: impl Into<String>) -> ObjectError {
        ObjectError::new("KeyError", message)
    }
    pub fn index(message: impl Into<String>) -> ObjectError {
        ObjectError::new("IndexError", message)
    }
    /// An unknown method, as Python reports it.
    pub fn no_method(type_name: &str, method: &str) -> ObjectError {
        ObjectError::new(
            "AttributeError",
            format!("'{type_name}' object has no attribute '{method}'"),
        )
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ObjectError {}

pub type CallResult = Result<Value, ObjectError>;

/// What a method did with its call.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The call finished; this is its result.
    Done(CallResult),
    /// The call waits inside the object; it is completed later through [`Effects`].
    Parked,
}

impl Outcome {
    /// Flattens a method that either failed before deciding (bad arguments) or decided.
    pub fn from_result(result: Result<Outcome, ObjectError>) -> Outcome {
        result.unwrap_or_else(|e| Outcome::Done(Err(e)))
    }
}

impl From<CallResult> for Outcome {
    fn from(result: CallResult) -> Outcome {
        Outcome::Done(result)
    }
}

/// Encodes an object's state for [`ReplicatedObject::save`] (named fields, so a snapshot
/// stays readable when a type gains a field).
pub fn encode_state<T: Serialize>(state: &T) -> Result<Vec<u8>, ObjectError> {
    rmp_serde::to_vec_named(state)
        .map_err(|e| ObjectError::runtime(format!("cannot save object state: {e}")))
}

/// Decodes what [`encode_state`] produced; bad bytes are an error, never a panic.
pub fn decode_state<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ObjectError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| ObjectError::runtime(format!("cannot restore object state: {e}")))
}

/// Side effects of applying one call: parked calls (of any session) that now complete.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    pub completed: Vec<(CallId, CallResult)>,
}

impl Effects {
    pub fn complete(&mut self, call: CallId, result: CallResult) {
        self.completed.push((call, result));
    }
}

/// A replicated object. Implementations must be deterministic: the same calls in the same
/// order give the same results and effects on every replica (use BTreeMap, never HashMap
/// iteration order, clocks or randomness).
pub trait ReplicatedObject: Send + fmt::Debug {
    /// The Python-style class name, e.g. "Counter".
    fn type_name(&self) -> &str;

    /// Runs `method` for `call`. Wrong arguments are a TypeError, an unknown method an
    /// AttributeError; never panics.
    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome;

    /// `__str__`, e.g. `<DSemaphore object>`.
    fn describe(&self) -> String;

    /// Whether `method` never changes the object's state (the `readonly` role may call
    /// it). False unless the type says so: an unknown method is never a read.
    fn is_read_only(&self, _method: &str) -> bool {
        false
    }

    /// `__repr__`, e.g. `<DSemaphore count=0>`; the same as `__str__` unless the type says
    /// otherwise (ConCoord 1.1's threading objects show their state only in `__repr__`).
    fn repr(&self) -> String {
        self.describe()
    }

    /// A user-defined object (whose calls the state machine may run in batches).
    fn as_user_mut(&mut self) -> Option<&mut user::UserObject> {
        None
    }

    /// `__str__` (or with `repr`, `__repr__`) as a call: a user type's may raise.
    fn show_call(&self, repr: bool) -> CallResult {
        Ok(Value::from(if repr {
            self.repr()
        } else {
            self.describe()
        }))
    }

    /// The session is gone: release what it owns (locks, permits), which may complete calls
    /// of other sessions, and drop its parked calls without completing them.
    fn session_expired(&mut self, _session: SessionId, _fx: &mut Effects) {}

    /// Removes every parked call (the object is being reset or deleted); the registry
    /// completes them with an error.
    fn drain_parked(&mut self) -> Vec<CallId> {
        Vec::new()
    }

    /// Serialized state, for snapshots (rmp-serde of the object).
    fn save(&self) -> Result<Vec<u8>, ObjectError>;
}

/// An object whose methods never park: each call finishes at once with a [`CallResult`],
/// and there is nothing a session holds or waits for. Implementing it is all such a type
/// needs; the [`ReplicatedObject`] impl below supplies the rest (the type name, `invoke`,
/// `describe` and `save`), and the registry constructs and restores it through
/// [`SimpleObject::from_args`] and [`SimpleObject::restore`].
pub trait SimpleObject: Serialize + serde::de::DeserializeOwned + Send + fmt::Debug {
    /// The Python-style class name, e.g. "Counter": the object's `type_name()`, and the
    /// name its constructor reports argument errors under.
    const CLASS: &'static str;

    /// The methods that never change the object's state.
    const READ_ONLY: &'static [&'static str] = &[];

    /// Builds the object from constructor arguments. By default the constructor takes no
    /// arguments and starts from `Default`.
    fn from_args(args: &[Value]) -> Result<Self, ObjectError>
    where
        Self: Default,
    {
        args::arity(Self::CLASS, args, &[], 0)?;
        Ok(Self::default())
    }

    /// Rebuilds the object from the bytes its `save()` produced.
    fn restore(bytes: &[u8]) -> Result<Self, ObjectError> {
        decode_state(bytes)
    }

    /// Runs `method`; see [`ReplicatedObject::invoke`].
    fn call(&mut self, method: &str, args: &[Value]) -> CallResult;

    /// What [`ReplicatedObject::describe`] returns (named apart so that the two traits never
    /// make a `describe()` call ambiguous).
    fn show(&self) -> String;
}

impl<T: SimpleObject> ReplicatedObject for T {
    fn type_name(&self) -> &str {
        T::CLASS
    }

    fn invoke(
        &mut self,
        _call: CallId,
        method: &str,
        args: &[Value],
        _fx: &mut Effects,
    ) -> Outcome {
        self.call(method, args).into()
    }

    fn describe(&self) -> String {
        self.show()
    }

    fn is_read_only(&self, method: &str) -> bool {
        T::READ_ONLY.contains(&method)
    }

    fn save(&self) -> Result<Vec<u8>, ObjectError> {
        encode_state(self)
    }
}

/// Shorthands for the unit tests of the object types.
#[cfg(test)]
pub(crate) mod tests_support {
    pub use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject};
    use crate::command::{SessionId, Value};

    pub fn c(session: SessionId, seq: u64) -> CallId {
        CallId { session, seq }
    }

    pub fn v(x: impl Into<Value>) -> Value {
        x.into()
    }

    pub fn ok(x: impl Into<Value>) -> Outcome {
        Outcome::Done(Ok(x.into()))
    }

    pub fn err(kind: &str, message: &str) -> Outcome {
        Outcome::Done(Err(ObjectError::new(kind, message)))
    }
}
