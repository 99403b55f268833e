//! Commands that travel through consensus: what a slot of the replicated log holds.
//!
//! Everything here is applied deterministically by every replica, so it contains no
//! clocks, no addresses of connections and no randomness.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A msgpack value: the type of every argument and result of a remote call.
pub type Value = rmpv::Value;

/// A client session, chosen at random by the client when it opens the session.
pub type SessionId = u64;

/// A replica's identity inside a group, assigned when it joins the view.
pub type ReplicaId = u64;

/// One call a client asks the group to perform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientCommand {
    pub session: SessionId,
    /// Per-session sequence number; (session, seq) names a command for exactly-once.
    pub seq: u64,
    /// The client has received the replies of every seq below this one, so the
    /// replicas may forget them (bounds the reply cache).
    pub ack: u64,
    pub op: Operation,
    /// Who sent it, as the replica that took it authenticated the connection (`token:NAME`,
    /// `cert:CN`); set by that replica, never taken from the client. A session belongs to
    /// the identity that opened it. None without an auth file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// What a client command does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Operation {
    /// Starts the session named by `ClientCommand::session` (sent with seq 0).
    OpenSession,
    /// Ends the session, releasing what it holds.
    CloseSession,
    /// Calls `method` on the named object.
    Call {
        object: String,
        method: String,
        args: Vec<Value>,
    },
    /// Creates an object of `type_name` (dotted ConCoord name or short name).
    Create {
        name: String,
        type_name: String,
        args: Vec<Value>,
    },
    /// Deletes an object; its parked calls fail.
    Delete { name: String },
    /// Lists objects as a map from name to type name.
    List,
    /// Defines a user object type from Python source, compiled by every replica from this
    /// replicated copy. With `replace`, an existing type of that name gets the new code and
    /// its live objects keep their state. An empty `class` means the source's only class.
    DefineType {
        module: String,
        class: String,
        source: String,
        #[serde(default)]
        replace: bool,
    },
    /// Lists the user types.
    ListTypes,
    /// One user type, with its source.
    ShowType { name: String },
}

/// One entry of a batch decided in a slot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    Client(ClientCommand),
    /// The leader saw no heartbeat from this session within its lease.
    ExpireSession(SessionId),
    /// Defines a user type unless one of that name exists (the founder's `-o` from a file);
    /// a group that has the type keeps its own code.
    EnsureType {
        module: String,
        class: String,
        source: String,
    },
    /// Creates an object unless one of that name exists (the `-o` default object).
    EnsureObject {
        name: String,
        type_name: String,
        args: Vec<Value>,
    },
}

/// The membership of the group: who votes and where they listen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct View {
    /// Grows by one with every membership change.
    pub number: u64,
    /// Voting members.
    pub members: BTreeMap<ReplicaId, String>,
    /// Members that receive the log but do not vote yet: a replica is added as a learner
    /// and promoted once it has caught up, so adding one never stalls the group.
    #[serde(default)]
    pub learners: BTreeMap<ReplicaId, String>,
    /// The id the next member to join will receive.
    pub next_id: ReplicaId,
    /// Drawn at random when the group is founded; peers of another group are refused, so
    /// a wiped replica restarted as a founder can never vote in its old group.
    #[serde(default)]
    pub group: u64,
}

impl View {
    /// The view of a group founded by a single replica.
    pub fn founded_by(addr: &str) -> View {
        let mut members = BTreeMap::new();
        members.insert(1, addr.to_string());
        View {
            number: 1,
            members,
            learners: BTreeMap::new(),
            next_id: 2,
            group: 0,
        }
    }

    /// Votes needed among the voting members.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Whether `id` is a voting member.
    pub fn contains(&self, id: ReplicaId) -> bool {
        self.members.contains_key(&id)
    }

    /// Whether `id` is a voting member or a learner.
    pub fn knows(&self, id: ReplicaId) -> bool {
        self.members.contains_key(&id) || self.learners.contains_key(&id)
    }

    pub fn is_learner(&self, id: ReplicaId) -> bool {
        self.learners.contains_key(&id)
    }

    /// Voting members and learners, with their addresses.
    pub fn everyone(&self) -> impl Iterator<Item = (ReplicaId, &str)> {
        self.members
            .iter()
            .chain(self.learners.iter())
            .map(|(id, a)| (*id, a.as_str()))
    }

    pub fn addr_of(&self, id: ReplicaId) -> Option<&str> {
        self.members
            .get(&id)
            .or_else(|| self.learners.get(&id))
            .map(String::as_str)
    }

    pub fn id_of(&self, addr: &str) -> Option<ReplicaId> {
        self.everyone().find(|(_, a)| *a == addr).map(|(id, _)| id)
    }

    /// Applies a change and returns the new view (the change's own effect only).
    pub fn apply(&self, change: &Reconfig) -> View {
        let mut next = self.clone();
        next.number += 1;
        match change {
            Reconfig::Add { addr, replaces } => {
                match (next.id_of(addr), replaces) {
                    // A replica that lost its disk comes back as a new learner: its old
                    // identity, with whatever it promised, is retired.
                    (Some(old), Some(r)) if old == *r => {
                        next.members.remove(&old);
                        next.learners.remove(&old);
                    }
                    // Already there (a retried or stale add): nothing to do, so an old
                    // proposal decided late can never retire a live member.
                    (Some(_), _) => return next,
                    (None, _) => {}
                }
                next.learners.insert(next.next_id, addr.clone());
                next.next_id += 1;
            }
            Reconfig::Promote { id } => {
                if let Some(addr) = next.learners.remove(id) {
                    next.members.insert(*id, addr);
                }
            }
            Reconfig::Remove { id } => {
                next.members.remove(id);
                next.learners.remove(id);
            }
        }
        next
    }
}

/// A membership change. It occupies a slot of its own and takes effect from the next slot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Reconfig {
    /// Adds a learner at `addr`. With `replaces`, the member of that id at the same address
    /// (which lost its disk) is retired; without it, an address already present is left as
    /// it is.
    Add {
        addr: String,
        #[serde(default)]
        replaces: Option<ReplicaId>,
    },
    /// Makes a learner that has caught up a voting member.
    Promote { id: ReplicaId },
    /// Removes a member or learner.
    Remove { id: ReplicaId },
}

/// The value chosen for one slot of the log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum SlotValue {
    /// Fills a gap a new leader found; does nothing.
    Noop,
    Batch(Vec<Command>),
    Reconfig(Reconfig),
}
