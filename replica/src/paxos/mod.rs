//! Sans-IO Multi-Paxos: pure state machines that take messages and time and return
//! actions. No tokio, no sockets, no clock: the runtime, the simulator and the tests all
//! drive the same code.

pub mod core;
pub mod durable;
pub mod message;

pub use self::core::{Config, Millis, Output, Paxos, ProposeError};
pub use durable::{Durable, Record, Snapshot};
pub use message::{AcceptedEntry, Ballot, Message};

#[cfg(test)]
mod tests;
