//! A whole replica without I/O: consensus, the state machine, client leases and the routing
//! of replies to connections. The tokio runtime and the simulator both drive this type.

use crate::command::{ClientCommand, Command, Reconfig, ReplicaId, SessionId, SlotValue, View};
use crate::net::wire::{
    MembershipChange, MembershipReply, PeerFrame, ReplicaFrame, ReplyResult, StatusReport,
};
use crate::paxos::{self, Durable, Message, Millis, Paxos, ProposeError, Record, Snapshot};
use crate::state::{Completion, StateMachine};
use std::collections::{BTreeSet, HashMap};

/// A connection of the driver's, named by a number it chooses.
pub type ConnId = u64;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub paxos: paxos::Config,
    /// A session not heard from for this long is expired by the leader.
    pub session_lease_ms: Millis,
    /// Take a snapshot (and compact the log) every this many slots.
    pub snapshot_every: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            paxos: paxos::Config::default(),
            session_lease_ms: 10_000,
            snapshot_every: 10_000,
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
    /// Make this record durable before performing any later action.
    Persist(Record),
    /// Make this snapshot durable, then start a fresh log holding
    /// [`Node::checkpoint_records`] as of this moment; older records may go.
    SaveSnapshot(Snapshot, Vec<Record>),
    /// The snapshot a leader sent could not be restored: this replica cannot go on.
    Fatal(String),
}

/// Who waits for the one membership change in flight.
#[derive(Clone, Debug, PartialEq)]
enum ChangeWaiter {
    Joiner(ConnId),
    Admin(ConnId),
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
    /// The membership change this leader proposed and who waits for it.
    change: Option<(Reconfig, ChangeWaiter)>,
    /// Decided prefix at the latest snapshot.
    snapshot_slot: u64,
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
        let mut view = View::founded_by(addr);
        // The caller's randomness names the group (never 0, which means "unknown").
        view.group = seed.max(1);
        let paxos = Paxos::new(1, view, cfg.paxos.clone(), seed, now);
        let mut node = Node::with(addr, cfg, paxos, state);
        let mut out = Vec::new();
        node.paxos.found(now, first, &mut out);
        let mut actions = Vec::new();
        node.perform(now, out, &mut actions);
        node.run_put_off_into(&mut actions);
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

    /// A replica restarted with its disk: objects from the snapshot, then the decided
    /// slots after it replayed. `state` is the empty state machine (its object types).
    #[allow(clippy::too_many_arguments)]
    pub fn recover(
        addr: &str,
        id: ReplicaId,
        genesis: View,
        cfg: NodeConfig,
        state: StateMachine,
        durable: &Durable,
        seed: u64,
        now: Millis,
    ) -> Result<Node, String> {
        let state = match &durable.snapshot {
            Some(snap) => StateMachine::restore(state.types().clone(), &snap.state)
                .map_err(|e| format!("cannot restore the snapshot at slot {}: {e}", snap.slot))?,
            None => state,
        };
        let mut out = Vec::new();
        let paxos = Paxos::recover(id, genesis, cfg.paxos.clone(), seed, now, durable, &mut out);
        let mut node = Node::with(addr, cfg, paxos, state);
        node.snapshot_slot = durable.snapshot.as_ref().map_or(0, |s| s.slot);
        node.member = true;
        let mut actions = Vec::new();
        node.perform(now, out, &mut actions);
        node.run_put_off_into(&mut actions);
        // Recovery replays history: whatever it would tell clients or peers is stale.
        let view = node.paxos.view();
        node.member = view.knows(id);
        // An id the replayed view has not reached yet (a joiner that crashed before
        // replaying its own add) is not removed; one below next_id that is absent is.
        node.removed = !node.member && id < view.next_id;
        Ok(node)
    }

    /// What a fresh log must start with after a snapshot (see [`Action::SaveSnapshot`]).
    pub fn checkpoint_records(&self) -> Vec<Record> {
        self.paxos.checkpoint_records(self.snapshot_slot)
    }

    fn with(addr: &str, cfg: NodeConfig, paxos: Paxos, state: StateMachine) -> Node {
        let member = paxos.view().knows(paxos.id());
        Node {
            member,
            addr: addr.to_string(),
            cfg,
            paxos,
            state,
            waiting: HashMap::new(),
            heard: HashMap::new(),
            expiring: BTreeSet::new(),
            change: None,
            snapshot_slot: 0,
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

    /// Where to send a client this replica cannot serve: the leader's address, unless the
    /// leader is this replica or unknown.
    pub fn redirect_hint(&self) -> Option<String> {
        let id = self.paxos.leader().filter(|id| *id != self.id())?;
        self.paxos.view().addr_of(id).map(str::to_string)
    }

    /// The identity that opened `session`, as this replica has applied it: None when there
    /// is no such session, Some(None) when it was opened without an auth file.
    pub fn session_owner(&self, session: SessionId) -> Option<Option<&str>> {
        self.state.session_owner(session)
    }

    /// Whether a call of `method` on `object` would change no state here now.
    pub fn is_read_only_call(&self, object: &str, method: &str) -> bool {
        self.state.is_read_only(object, method)
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
            state: self.serving_state().to_string(),
        }
    }

    /// How this replica takes part, as its own executed view says.
    pub fn serving_state(&self) -> &'static str {
        let view = self.paxos.view();
        if self.removed {
            "removed"
        } else if view.contains(self.id()) {
            "member"
        } else if view.is_learner(self.id()) {
            "learner"
        } else {
            // Not in the view it has replayed so far: a joiner still catching up.
            "joining"
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
            let leader = self.redirect_hint();
            actions.push(reply(conn, &cmd, ReplyResult::NotLeader { leader }));
            return actions;
        }
        // Only sessions that exist are tracked (their open may still be in the pipeline:
        // the lease starts when it executes).
        if self.state.has_session(cmd.session) {
            self.heard.insert(cmd.session, now);
        }
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
                ProposeError::NotLeader { .. } => self.redirect_hint(),
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
            let leader = self.redirect_hint();
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

    /// A replica at `addr` asks to join (answered with a `PeerFrame`).
    pub fn on_join(&mut self, now: Millis, conn: ConnId, addr: String) -> Vec<Action> {
        let mut actions = Vec::new();
        // A learner added ahead of time (by an administrator or the operator) has never
        // voted, so a fresh process may take its identity as it is.
        let view = self.paxos.view();
        if self.paxos.is_leader()
            && let Some(id) = view.id_of(&addr).filter(|id| view.is_learner(*id))
        {
            actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::Joined {
                    id,
                    view: view.clone(),
                    genesis: self.paxos.genesis_view().clone(),
                },
            });
            return actions;
        }
        // A voter at this address is coming back without its disk: replace it.
        let replaces = view.id_of(&addr).filter(|id| view.contains(*id));
        match self.propose_change(
            now,
            Reconfig::Add { addr, replaces },
            ChangeWaiter::Joiner(conn),
            &mut actions,
        ) {
            Ok(()) => {}
            Err(ProposeError::NotLeader { .. }) => actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::JoinRedirect {
                    leader: self.redirect_hint(),
                },
            }),
            Err(ProposeError::ChangeInProgress) => actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::JoinRefused {
                    reason: "another membership change is in progress; retry".into(),
                },
            }),
        }
        actions
    }

    /// Leadership goes to the most recently heard follower (before this replica stops);
    /// the successor, if this replica led and had one.
    pub fn hand_over(&mut self, now: Millis) -> (Option<ReplicaId>, Vec<Action>) {
        let mut out = Vec::new();
        let successor = self.paxos.hand_over(now, &mut out);
        let mut actions = Vec::new();
        self.perform(now, out, &mut actions);
        (successor, actions)
    }

    /// An administrator changes the view (answered with `ReplicaFrame::Membership`).
    pub fn on_membership(
        &mut self,
        now: Millis,
        conn: ConnId,
        change: MembershipChange,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let answer = |reply| Action::Reply {
            conn,
            frame: ReplicaFrame::Membership(reply),
        };
        if !self.paxos.is_leader() {
            let leader = self.redirect_hint();
            actions.push(answer(MembershipReply::NotLeader { leader }));
            return actions;
        }
        let reconfig = match change {
            MembershipChange::Add { addr } => {
                // Adding a member twice is a no-op, so an administrator may retry.
                if self.paxos.view().id_of(&addr).is_some() {
                    let view = self.paxos.view().clone();
                    actions.push(answer(MembershipReply::Done { view }));
                    return actions;
                }
                Reconfig::Add {
                    addr,
                    replaces: None,
                }
            }
            MembershipChange::Remove { replica } => {
                let view = self.paxos.view();
                let id = replica
                    .parse::<ReplicaId>()
                    .ok()
                    .filter(|id| view.knows(*id))
                    .or_else(|| view.id_of(&replica));
                let Some(id) = id else {
                    actions.push(answer(MembershipReply::Refused {
                        reason: format!("{replica} is not a member of view {}", view.number),
                    }));
                    return actions;
                };
                if view.members.len() == 1 && view.contains(id) {
                    actions.push(answer(MembershipReply::Refused {
                        reason: "cannot remove the last member of the group".into(),
                    }));
                    return actions;
                }
                if id == self.id() {
                    // The leader leaves last: hand leadership to a follower, which then
                    // runs the removal when the administrator asks it again.
                    let mut out = Vec::new();
                    let successor = self.paxos.hand_over(now, &mut out);
                    self.perform(now, out, &mut actions);
                    let leader =
                        successor.and_then(|s| self.paxos.view().addr_of(s).map(str::to_string));
                    actions.push(answer(MembershipReply::NotLeader { leader }));
                    return actions;
                }
                Reconfig::Remove { id }
            }
        };
        if let Err(e) = self.propose_change(now, reconfig, ChangeWaiter::Admin(conn), &mut actions)
        {
            let reply = match e {
                ProposeError::NotLeader { .. } => MembershipReply::NotLeader {
                    leader: self.redirect_hint(),
                },
                ProposeError::ChangeInProgress => MembershipReply::Refused {
                    reason: "another membership change is in progress; retry".into(),
                },
            };
            actions.push(answer(reply));
        }
        actions
    }

    fn propose_change(
        &mut self,
        now: Millis,
        change: Reconfig,
        waiter: ChangeWaiter,
        actions: &mut Vec<Action>,
    ) -> Result<(), ProposeError> {
        if self.removed {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let mut out = Vec::new();
        let result = self.paxos.propose_change(now, change.clone(), &mut out);
        if result.is_ok() {
            self.change = Some((change, waiter));
        }
        self.perform(now, out, actions);
        result
    }

    /// The driver closed a connection: forget what waited on it.
    pub fn on_closed(&mut self, conn: ConnId) {
        self.waiting.retain(|_, c| *c != conn);
        if let Some((_, ChangeWaiter::Joiner(c) | ChangeWaiter::Admin(c))) = &self.change
            && *c == conn
        {
            self.change = None;
        }
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
                paxos::Output::Persist(record) => actions.push(Action::Persist(record)),
                paxos::Output::Restore(snapshot) => {
                    self.run_put_off_into(actions);
                    match StateMachine::restore(self.state.types().clone(), &snapshot.state) {
                        Ok(state) => {
                            self.state = state;
                            self.snapshot_slot = snapshot.slot;
                            // Calls parked before are part of the restored state; their
                            // waiters retry and are answered from it.
                            let records = self.paxos.checkpoint_records(snapshot.slot);
                            actions.push(Action::SaveSnapshot(snapshot, records));
                        }
                        Err(e) => actions.push(Action::Fatal(format!(
                            "cannot restore the snapshot of slot {} sent by the leader: {e}",
                            snapshot.slot
                        ))),
                    }
                }
                paxos::Output::ViewChanged(view) => {
                    let member = view.knows(self.id());
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
        self.maybe_snapshot(actions);
    }

    /// Every `snapshot_every` slots: save the objects, let the core drop old log entries,
    /// and have the driver replace its log with the snapshot.
    fn maybe_snapshot(&mut self, actions: &mut Vec<Action>) {
        let upto = self.paxos.decided_upto();
        if upto < self.snapshot_slot + self.cfg.snapshot_every.max(1) {
            return;
        }
        self.run_put_off_into(actions);
        let state = match self.state.save() {
            Ok(bytes) => bytes,
            Err(e) => {
                // Keep running on the log; the next attempt may succeed.
                tracing::warn!("cannot snapshot the objects at slot {upto}: {e}");
                self.snapshot_slot = upto;
                return;
            }
        };
        let snapshot = Snapshot {
            slot: upto,
            view: self.paxos.view().clone(),
            state,
        };
        self.snapshot_slot = upto;
        self.paxos.compact(snapshot.clone());
        actions.push(Action::SaveSnapshot(
            snapshot,
            self.paxos.checkpoint_records(upto),
        ));
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
                }
                let done = self.state.apply_slot(&cmds);
                self.deliver(done, actions);
            }
            SlotValue::Reconfig(change) => {
                let Some((wanted, waiter)) = self.change.take() else {
                    return;
                };
                if wanted != change {
                    self.change = Some((wanted, waiter));
                    return;
                }
                let view = self.paxos.view().clone();
                match (waiter, &change) {
                    (ChangeWaiter::Joiner(conn), Reconfig::Add { addr, .. }) => {
                        let frame = match view.id_of(addr) {
                            Some(id) => PeerFrame::Joined {
                                id,
                                view,
                                genesis: self.paxos.genesis_view().clone(),
                            },
                            None => PeerFrame::JoinRefused {
                                reason: "the add was superseded".into(),
                            },
                        };
                        actions.push(Action::JoinReply { conn, frame });
                    }
                    (ChangeWaiter::Admin(conn), _) | (ChangeWaiter::Joiner(conn), _) => {
                        actions.push(Action::Reply {
                            conn,
                            frame: ReplicaFrame::Membership(MembershipReply::Done { view }),
                        });
                    }
                }
            }
        }
    }

    /// Runs the user-object calls that decided slots put off (see
    /// [`StateMachine::apply_slot`]) and returns their replies. The driver calls this once
    /// it has performed the actions of a burst of inputs: the calls decided in the burst
    /// then share one interpreter round trip, and the burst's messages (a follower's
    /// acknowledgements, say) have left before the interpreter runs.
    pub fn run_put_off_calls(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        self.run_put_off_into(&mut actions);
        actions
    }

    fn run_put_off_into(&mut self, actions: &mut Vec<Action>) {
        if self.state.has_put_off() {
            let done = self.state.run_put_off();
            self.deliver(done, actions);
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
        // Neither leading nor running: whoever waits here must go to the new leader (this
        // also covers a candidacy that began as leader and then lost).
        if !leader && !self.paxos.is_candidate() && !self.waiting.is_empty() {
            self.fail_waiting(actions);
        }
        self.was_leader = leader;
    }

    /// Answers every waiting client with `Unavailable { reason }` (the driver halted).
    pub fn fail_waiting_with(&mut self, reason: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        self.answer_waiting(
            ReplyResult::Unavailable {
                reason: reason.to_string(),
            },
            &mut actions,
        );
        actions
    }

    /// Answers every client waiting here with `result`; they retry elsewhere.
    fn answer_waiting(&mut self, result: ReplyResult, actions: &mut Vec<Action>) {
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
    }

    fn fail_waiting(&mut self, actions: &mut Vec<Action>) {
        let result = if self.removed {
            self.removed_result()
        } else {
            ReplyResult::NotLeader {
                leader: self.redirect_hint(),
            }
        };
        self.answer_waiting(result, actions);
        match self.change.take() {
            Some((_, ChangeWaiter::Joiner(conn))) => actions.push(Action::JoinReply {
                conn,
                frame: PeerFrame::JoinRedirect { leader: None },
            }),
            Some((_, ChangeWaiter::Admin(conn))) => actions.push(Action::Reply {
                conn,
                frame: ReplicaFrame::Membership(MembershipReply::NotLeader {
                    leader: self.redirect_hint(),
                }),
            }),
            None => {}
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
