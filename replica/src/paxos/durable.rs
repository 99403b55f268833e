//! What a replica must keep on stable storage, as the core sees it.
//!
//! The core emits [`Record`]s; the driver makes them durable before it performs any action
//! that follows them (an acceptor's answer, a client's reply). After a crash the driver
//! hands back the latest [`Snapshot`] and the records written since, and the core rebuilds
//! its promise, its accepted values and its decided log from them.

use super::message::Ballot;
use crate::command::{SlotValue, View};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Record {
    /// The acceptor promised this ballot.
    Promised(Ballot),
    /// The acceptor accepted `value` for `slot` in `ballot`.
    Accepted {
        slot: u64,
        ballot: Ballot,
        value: SlotValue,
    },
    /// `slot` is decided. `value` is None when it is the value accepted for that slot,
    /// which saves writing a batch twice.
    Decided { slot: u64, value: Option<SlotValue> },
}

/// The objects' state after every slot below `slot` was applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// First slot not covered by the snapshot.
    pub slot: u64,
    /// The view in force at `slot`.
    pub view: View,
    /// `StateMachine::save()` bytes.
    pub state: Vec<u8>,
}

/// Everything a replica reloads after a restart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Durable {
    pub snapshot: Option<Snapshot>,
    /// Records written after the snapshot was taken, in write order.
    pub records: Vec<Record>,
}
