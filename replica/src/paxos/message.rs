//! Messages between replicas. Every message carries the sender's ballot so a receiver can
//! tell a stale leader from the current one.

use super::durable::Snapshot;
use crate::command::{ReplicaId, SlotValue};
use serde::{Deserialize, Serialize};

/// A leadership attempt: (round, replica). Compared by round, then replica id, so two
/// replicas never hold equal ballots.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub struct Ballot {
    pub round: u64,
    pub leader: ReplicaId,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot {
        round: 0,
        leader: 0,
    };
}

/// A slot's accepted value as an acceptor reports it in a promise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AcceptedEntry {
    pub slot: u64,
    pub ballot: Ballot,
    pub value: SlotValue,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Message {
    /// Phase 1a: promise not to accept lower ballots, for every slot from `from_slot` on.
    Prepare { ballot: Ballot, from_slot: u64 },
    /// Phase 1b: the acceptor promised; these are its accepted values at or after
    /// `from_slot` that it has not yet seen decided, and the end of its decided prefix.
    Promise {
        ballot: Ballot,
        accepted: Vec<AcceptedEntry>,
        decided_upto: u64,
    },
    /// The receiver has promised a higher ballot; the sender should stand down.
    Nack { ballot: Ballot, promised: Ballot },
    /// Phase 2a, with the leader's decided prefix piggybacked.
    Accept {
        ballot: Ballot,
        slot: u64,
        value: SlotValue,
        decided_upto: u64,
    },
    /// Phase 2b.
    Accepted { ballot: Ballot, slot: u64 },
    /// The leader is alive; slots below `decided_upto` are decided.
    Heartbeat { ballot: Ballot, decided_upto: u64 },
    /// A follower answers a heartbeat, so the leader knows it still has a majority.
    HeartbeatAck { ballot: Ballot, decided_upto: u64 },
    /// Asks for decided values from `from_slot` on.
    CatchUp { from_slot: u64 },
    /// Decided values, contiguous from `first_slot`.
    Decided {
        first_slot: u64,
        values: Vec<SlotValue>,
    },
    /// The slots asked for were compacted away: install this snapshot instead.
    InstallSnapshot { snapshot: Snapshot },
    /// The leader hands leadership over: start an election now.
    TakeOver { ballot: Ballot },
    /// Pre-vote (as etcd's): "would you take part in an election of round `round`?" Asked
    /// before a real candidacy, and changes nothing at the receiver, so a member that merely
    /// lost touch (restarted, cut off) cannot depose a leader that a majority still hears.
    PreVote { round: u64, decided_upto: u64 },
    /// The answer: granted only by a member that has not heard from a leader for the
    /// minimum election timeout itself.
    PreVoteReply { round: u64, granted: bool },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "Prepare",
            Message::Promise { .. } => "Promise",
            Message::Nack { .. } => "Nack",
            Message::Accept { .. } => "Accept",
            Message::Accepted { .. } => "Accepted",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatAck { .. } => "HeartbeatAck",
            Message::CatchUp { .. } => "CatchUp",
            Message::Decided { .. } => "Decided",
            Message::InstallSnapshot { .. } => "InstallSnapshot",
            Message::TakeOver { .. } => "TakeOver",
            Message::PreVote { .. } => "PreVote",
            Message::PreVoteReply { .. } => "PreVoteReply",
        }
    }
}
