//! The messages on a connection, after the length prefix. See replica/PROTOCOL.md.
//!
//! Every connection starts with a [`Hello`] from the side that connected and a [`Welcome`]
//! from the replica; then clients send [`ClientFrame`]s and receive [`ReplicaFrame`]s, and
//! peers exchange [`PeerFrame`]s.

use crate::auth::Token;
use crate::command::{ClientCommand, ReplicaId, SessionId, Value, View};
use crate::paxos::Message;
use serde::{Deserialize, Serialize};

/// Identifies the protocol in the first frame, so a stray connection fails fast.
pub const MAGIC: &str = "concoord";
/// Bumped on any incompatible change of the frames below.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Hello {
    pub magic: String,
    pub version: u32,
    pub role: Role,
    /// A bearer token, for a replica with an auth file (ConCoord's security token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
}

impl Hello {
    pub fn new(role: Role) -> Hello {
        Hello {
            magic: MAGIC.to_string(),
            version: PROTOCOL_VERSION,
            role,
            token: None,
        }
    }

    /// The hello of a client or replica that proves itself with `token`.
    pub fn with_token(role: Role, token: Option<Token>) -> Hello {
        Hello {
            token,
            ..Hello::new(role)
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Role {
    /// A client of the objects (the client library, the CLI, the operator).
    Client,
    /// A member of the view, opening its outbound link to another member of `group`.
    Peer {
        id: ReplicaId,
        addr: String,
        #[serde(default)]
        group: u64,
        /// The IP the sender is reachable at now (`--advertise-ip`, a pod's IP), so the
        /// others publish its new address as soon as it is back after a restart.
        #[serde(default)]
        ip: Option<std::net::IpAddr>,
    },
    /// A replica that is not a member yet and asks to join.
    Joiner { addr: String },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Welcome {
    Accepted { version: u32, replica: ReplicaId },
    Refused { reason: String },
}

/// Client to replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ClientFrame {
    /// A command to run through consensus; answered by a `Reply` with the same session/seq.
    Request(ClientCommand),
    /// Keeps the session's lease alive; answered by `KeepAliveAck`.
    KeepAlive { session: SessionId },
    /// Asks this replica for its own view of the group; answered by `Status`.
    Status,
    /// An administrator changes the view; answered by `Membership`.
    Membership(MembershipChange),
    /// Test harnesses cut and restore links (only with `--allow-fault-injection`);
    /// answered by `Faults`.
    Fault(Fault),
}

/// A fault a test harness injects into one replica (ToyFramework's "cut a connection").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Fault {
    /// Drop every message to and from this peer.
    CutLink {
        peer: ReplicaId,
    },
    RestoreLink {
        peer: ReplicaId,
    },
    RestoreAll,
}

/// One membership change asked for by an administrator (or the operator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum MembershipChange {
    /// Adds a replica that will listen at `addr` ("host:port").
    Add { addr: String },
    /// Removes a member, named by its id ("3") or its address ("host:port").
    Remove { replica: String },
}

/// The answer to a membership change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum MembershipReply {
    /// The change is decided; this is the new view.
    Done { view: View },
    /// Ask the leader (after a hand-over, the new one).
    NotLeader { leader: Option<String> },
    /// The change cannot be made; why.
    Refused { reason: String },
}

/// Replica to client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ReplicaFrame {
    Reply {
        session: SessionId,
        seq: u64,
        result: ReplyResult,
    },
    KeepAliveAck {
        session: SessionId,
        /// False when the session is unknown (expired or never opened).
        alive: bool,
    },
    /// This replica does not lead; `leader` is where to go, when known.
    NotLeader {
        leader: Option<String>,
    },
    Status(StatusReport),
    Membership(MembershipReply),
    /// The links now cut, or why faults cannot be injected here.
    Faults(Result<Vec<ReplicaId>, String>),
}

/// The outcome of one client command.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ReplyResult {
    Ok(Value),
    /// A method raised: Python exception name and message.
    Err {
        kind: String,
        message: String,
    },
    /// This replica does not lead; retry at `leader`.
    NotLeader {
        leader: Option<String>,
    },
    /// The session expired (or never existed): its locks and permits are gone.
    SessionExpired,
    /// The replica cannot take commands now (removed from the view, disk full, ...).
    Unavailable {
        reason: String,
    },
}

/// One replica's account of the group, for `concoord status` and the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StatusReport {
    pub replica: ReplicaId,
    pub addr: String,
    pub view: View,
    pub leader: Option<ReplicaId>,
    pub is_leader: bool,
    /// Ballot this replica follows or leads, as (round, replica).
    pub ballot: (u64, ReplicaId),
    /// Every slot below this one is decided here.
    pub decided_upto: u64,
    /// Every slot below this one is applied to the objects here.
    pub executed_upto: u64,
    pub sessions: u64,
    pub objects: u64,
    /// How this replica serves: "member", "learner", "removed", "joining", or "halted: why".
    #[serde(default)]
    pub state: String,
}

/// Replica to replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum PeerFrame {
    Paxos(Message),
    /// A joiner asks to be added to the view (sent after `Hello{role: Joiner}`).
    Join {
        addr: String,
    },
    /// The contacted replica does not lead; ask `leader`.
    JoinRedirect {
        leader: Option<String>,
    },
    /// The joiner was added: its id, the view it is a member of, and the view at the
    /// start of the log it will replay.
    Joined {
        id: ReplicaId,
        view: View,
        genesis: View,
    },
    JoinRefused {
        reason: String,
    },
}
