//! A whole replica without I/O: consensus, the state machine, client leases and the routing
//! of replies to connections. The tokio runtime and the simulator both drive this type.

use crate::command::{ClientCommand, Command, Reconfig, ReplicaId, SessionId, SlotValue, View};
use crate::net::wire::{PeerFrame, ReplicaFrame, ReplyResult, StatusReport};
use crate::paxos::{self, Message, Millis, Paxos, ProposeError};
use crate::state::{Completion, StateMachine};
use std::collections::{BTreeSet, HashMap};

/// A connection of the driver's, named by a number it chooses.
pub type ConnId = u64;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub paxos: paxos::Config,
    /// A session not heard from for this long is expired by the leader.
    pub session_lease_ms: Millis,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            paxos: paxos::Config::default(),
            session_lease_ms: 10_000,
        }
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a consensus message to a replica of the view.
    Send { to: ReplicaId, msg: Message },
    /// Send a frame on a client connection.
    Reply { conn: ConnId, frame: ReplicaFrame },
    /// Answer a joiner's connection.
    JoinReply { conn: ConnId, frame: PeerFrame },
    /// The view changed: update peer links (and DNS, later).
    ViewChanged(View),
    /// This replica was removed from the view: stop serving.
    Removed,
}

pub struct Node {
    addr: String,
    cfg: NodeConfig,
    paxos: Paxos,
    state: StateMachine,
    /// Connections waiting for the reply of (session, seq).
    waiting: HashMap<(SessionId, u64), ConnId>,
    /// When the leader last heard from each session.
    heard: HashMap<SessionId, Millis>,
    /// Sessions whose expiry the leader has proposed.
    expiring: BTreeSet<SessionId>,
    /// Joiners waiting for their add to execute, by address.
    joins: HashMap<String, ConnId>,
    was_leader: bool,
    /// In the view as of the executed prefix (a joiner becomes one when its add executes).
    member: bool,
    /// Was a member and then left the view.
    removed: bool,
}

impl Node {
    /// A replica that founds a new group, creating `first` commands (the default object)
    /// in slot 0.
    pub fn found(
        addr: &str,
        cfg: NodeConfig,
        state: StateMachine,
        first: Vec<Command>,
        seed: u64,
        now: Millis,
    ) -> (Node, Vec<Action>) {
        let view = View::founded_by(addr);
        let paxos = Paxos::new(1, view, cfg.paxos.clone(), seed, now);
        let mut node = Node::with(addr, cfg, paxos, state);
        let mut out = Vec::new();
        node.paxos.found(now, first, &mut out);
        let mut actions = Vec::new();
        node.perform(now, out, &mut actions);
        (node, actions)
    }

    /// A replica that was added to a group as `id` and replays its log from `genesis`.
    pub fn joined(
        addr: &str,
        id: ReplicaId,
        genesis: View,
        cfg: NodeConfig,
        state: StateMachine,
        seed: u64,
        now: Millis,
    ) -> Node {
        let paxos = Paxos::new(id, genesis, cfg.paxos.clone(), seed, now);
        Node::with(addr, cfg, paxos, state)
    }

    fn with(addr: &str, cfg: NodeConfig, paxos: Paxos, state: StateMachine) -> Node {
        let member = paxos.view().contains(paxos.id());
        Node {
            member,
            addr: addr.to_string(),
            cfg,
            paxos,
            state,
            waiting: HashMap::new(),
            heard: HashMap::new(),
            expiring: BTreeSet::new(),
            joins: HashMap::new(),
            was_leader: false,
            removed: false,
        }
    }

    pub fn id(&self) -> ReplicaId {
        self.paxos.id()
    }
    pub fn view(&self) -> &View {
        self.paxos.view()
    }
    pub fn paxos(&self) -> &Paxos {
        &self.paxos
    }
    pub fn state(&self) -> &StateMachine {
        &self.state
    }
    pub fn is_leader(&self) -> bool {
        self.paxos.is_leader()
    }

    /// The address of the leader, for redirecting clients.
    pub fn leader_addr(&self) -> Option<String> {
        let id = self.paxos.leader()?;
        if id == self.id() {
            return Some(self.addr.clone());
        }
        self.paxos.view().addr_of(id).map(str::to_string)
    }

    pub fn status(&self) -> StatusReport {
        let b = self.paxos.ballot();
        StatusReport {
            replica: self.id(),
            addr: self.addr.clone(),
            view: self.paxos.view().clone(),
            leader: self.paxos.leader(),
            is_leader: self.paxos.is_leader(),
            ballot: (b.round, b.leader),
            decided_upto: self.paxos.decided_upto(),
            executed_upto: self.paxos.decided_upto(),
            sessions: self.state.session_count() as u64,
            objects: self.state.object_count() as u64,
        }
    }

    pub fn on_peer(&mut self, now: Millis, from: ReplicaId, msg: Message) -> Vec<Action> {
        let mut out = Vec::new();
        self.paxos.receive(now, from, msg, &mut out);
        let mut actions = Vec::new();
        self.perform(now, out, &mut actions);
        actions
    }

    pub fn on_tick(&mut self, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        self.paxos.tick(now, &mut out);
        let mut actions = Vec::new();
        self.perform(now, out, &mut actions);
        if self.paxos.is_leader() {
            self.expire_silent_sessions(now, &mut actions);
        }
        actions
    }

    /// A client command arrived on `conn`.
    pub fn on_request(&mut self, now: Millis, conn: ConnId, cmd: ClientCommand) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.removed {
            actions.push(reply(conn, &cmd, self.removed_result()));
            return actions;
        }
        if !self.paxos.is_leader() {
            let leader = self.leader_addr().filter(|a| *a != self.addr);
            actions.push(reply(conn, &cmd, ReplyResult::NotLeader { leader }));
            return actions;
        }
        self.heard.insert(cmd.session, now);
        // A retry of a command this group already ran is answered from the cache.
        match self.state.cached(cmd.session, cmd.seq) {
            Some(Some(result)) => {
                actions.push(reply(conn, &cmd, result.clone()));
                return actions;
            }
            Some(None) => {
                self.waiting.insert((cmd.session, cmd.seq), conn);
                return actions;
            }
            None => {}
        }
        self.waiting.insert((cmd.session, cmd.seq), conn);
        let mut out = Vec::new();
        let key = (cmd.session, cmd.seq);
        if let Err(e) = self.paxos.propose(now, Command::Client(cmd), &mut out) {
            self.waiting.remove(&key);
            let leader = match e {
                ProposeError::NotLeader { .. } => self.leader_addr(),
                ProposeError::ChangeInProgress => None,
            };
            actions.push(Action::Reply {
                conn,
                frame: ReplicaFrame::Reply {
                    session: key.0,
                    seq: key.1,
                    result: ReplyResult::NotLeader { leader },
                },
            });
        }
        self.perform(now, out, &mut actions);
        actions
    }

    pub fn on_keepalive(&mut self, now: Millis, conn: ConnId, session: SessionId) -> Vec<Action> {
        if !self.paxos.is_leader() {
            let leader = self.leader_addr().filter(|a| *a != self.addr);
            return vec![Action::Reply {
                conn,
                frame: ReplicaFrame::NotLeader { leader },
            }];
        }
        let alive = self.state.has_session(session);
        if alive {
            self.heard.insert(session, now);
        }
        vec![Action::Reply {
            conn,
            frame: ReplicaFrame::KeepAliveAck { session, alive },
        }]
    }

    /// A replica at `addr` asks to join.
    pub fn on_join(&mut self, now: Millis, conn: ConnId, addr: String) -> Vec<Action> {
        self.change(now, conn, Reconfig::Add { addr: addr.clone() }, Some(addr))
    }

    /// An administrator asks to remove a member (answered on `conn` as a join reply).
    pub fn on_remove(&mut self, now: Millis, conn: ConnId, id: ReplicaId) -> Vec<Action> {
        self.change(now, conn, Reconfig::Remove { id }, None)
    }

    fn change(
        &mut self,
        now: Millis,
        conn: ConnId,
        change: Reconfig,
        joiner: Option<String>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut out = Vec::new();
        match self.paxos.propose_change(now, change, &mut out) {
            Ok(()) => {
                if let Some(addr) = joiner {
                    self.joins.insert(addr, conn);
                }
            }
            Err(ProposeError::NotLeader { .. }) => actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::JoinRedirect {
                    leader: self.leader_addr().filter(|a| *a != self.addr),
                },
            }),
            Err(ProposeError::ChangeInProgress) => actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::JoinRefused {
                    reason: "another membership change is in progress; retry".into(),
                },
            }),
        }
        self.perform(now, out, &mut actions);
        actions
    }

    /// The driver closed a connection: forget what waited on it.
    pub fn on_closed(&mut self, conn: ConnId) {
        self.waiting.retain(|_, c| *c != conn);
        self.joins.retain(|_, c| *c != conn);
    }

    fn removed_result(&self) -> ReplyResult {
        ReplyResult::Unavailable {
            reason: format!(
                "replica {} was removed from the view; use another member",
                self.addr
            ),
        }
    }

    /// Turns consensus outputs into driver actions, applying decided slots.
    fn perform(&mut self, now: Millis, out: Vec<paxos::Output>, actions: &mut Vec<Action>) {
        for o in out {
            match o {
                paxos::Output::Send { to, msg } => actions.push(Action::Send { to, msg }),
                paxos::Output::Execute { value, .. } => self.execute(value, actions),
                paxos::Output::ViewChanged(view) => {
                    let member = view.contains(self.id());
                    actions.push(Action::ViewChanged(view));
                    if self.member && !member {
                        self.removed = true;
                        actions.push(Action::Removed);
                        self.fail_waiting(actions);
                    }
                    self.member = member;
                }
            }
        }
        self.track_leadership(now, actions);
    }

    fn execute(&mut self, value: SlotValue, actions: &mut Vec<Action>) {
        match value {
            SlotValue::Noop => {}
            SlotValue::Batch(cmds) => {
                for cmd in &cmds {
                    if let Command::ExpireSession(s) = cmd {
                        self.expiring.remove(s);
                        self.heard.remove(s);
                    }
                    let done = self.state.apply(cmd);
                    self.deliver(done, actions);
                }
            }
            SlotValue::Reconfig(Reconfig::Add { addr }) => {
                if let Some(conn) = self.joins.remove(&addr) {
                    let view = self.paxos.view().clone();
                    match view.id_of(&addr) {
                        Some(id) => actions.push(Action::JoinReply {
                            conn,
                            frame: PeerFrame::Joined {
                                id,
                                view,
                                genesis: self.paxos.genesis_view().clone(),
                            },
                        }),
                        None => actions.push(Action::JoinReply {
                            conn,
                            frame: PeerFrame::JoinRefused {
                                reason: "the add was superseded".into(),
                            },
                        }),
                    }
                }
            }
            SlotValue::Reconfig(Reconfig::Remove { .. }) => {}
        }
    }

    fn deliver(&mut self, done: Vec<Completion>, actions: &mut Vec<Action>) {
        for c in done {
            if let Some(conn) = self.waiting.remove(&(c.session, c.seq)) {
                actions.push(Action::Reply {
                    conn,
                    frame: ReplicaFrame::Reply {
                        session: c.session,
                        seq: c.seq,
                        result: c.result,
                    },
                });
            }
        }
    }

    /// On losing leadership, waiting clients are told to go elsewhere; they retry the same
    /// (session, seq) there. On gaining it, every session gets a full lease from now.
    fn track_leadership(&mut self, now: Millis, actions: &mut Vec<Action>) {
        let leader = self.paxos.is_leader();
        if leader && !self.was_leader {
            self.heard.clear();
            self.expiring.clear();
            for s in self.state.sessions() {
                self.heard.insert(s, now);
            }
        }
        if !leader && self.was_leader && !self.paxos.is_candidate() {
            self.fail_waiting(actions);
        }
        self.was_leader = leader;
    }

    fn fail_waiting(&mut self, actions: &mut Vec<Action>) {
        let result = if self.removed {
            self.removed_result()
        } else {
            ReplyResult::NotLeader {
                leader: self.leader_addr().filter(|a| *a != self.addr),
            }
        };
        for ((session, seq), conn) in self.waiting.drain() {
            actions.push(Action::Reply {
                conn,
                frame: ReplicaFrame::Reply {
                    session,
                    seq,
                    result: result.clone(),
                },
            });
        }
        for (_, conn) in self.joins.drain() {
            actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::JoinRedirect { leader: None },
            });
        }
    }

    fn expire_silent_sessions(&mut self, now: Millis, actions: &mut Vec<Action>) {
        let lease = self.cfg.session_lease_ms;
        let mut expired = Vec::new();
        for s in self.state.sessions() {
            let heard = *self.heard.entry(s).or_insert(now);
            if now.saturating_sub(heard) > lease && !self.expiring.contains(&s) {
                expired.push(s);
            }
        }
        if expired.is_empty() {
            return;
        }
        let mut out = Vec::new();
        for s in expired {
            self.expiring.insert(s);
            // Only the leader proposes; a failure here means it just lost leadership.
            let _ = self.paxos.propose(now, Command::ExpireSession(s), &mut out);
        }
        self.perform(now, out, actions);
    }
}

fn reply(conn: ConnId, cmd: &ClientCommand, result: ReplyResult) -> Action {
    Action::Reply {
        conn,
        frame: ReplicaFrame::Reply {
            session: cmd.session,
            seq: cmd.seq,
            result,
        },
    }
}
