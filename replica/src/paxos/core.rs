//! One replica's consensus state: acceptor, leader (or candidate) and learner in one owner.
//!
//! Protocol summary (Multi-Paxos with a stable leader):
//! - A candidate runs phase 1 once for every slot from its first undecided slot on and
//!   re-proposes, per slot, the value accepted with the highest ballot (noops fill gaps).
//! - A leader pipelines phase 2 for at most `window` slots; commands that arrive while the
//!   window is full are batched into the next slot.
//! - Followers learn decisions from the leader's `decided_upto` (piggybacked on accepts and
//!   heartbeats) when they accepted the same ballot's value, and ask for the rest.
//! - Membership changes occupy a slot of their own and take effect from the next slot. A
//!   leader proposes nothing past an undecided change, and after executing one it runs
//!   phase 1 again in the new view, so every slot is decided by quorums of one view.

use super::durable::{Durable, Record, Snapshot};
use super::message::{AcceptedEntry, Ballot, Message};
use crate::command::{Command, Reconfig, ReplicaId, SlotValue, View};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Time in milliseconds on the driver's clock (real or virtual).
pub type Millis = u64;

/// Knobs of the protocol; the defaults suit a LAN.
#[derive(Clone, Debug)]
pub struct Config {
    pub heartbeat_ms: Millis,
    /// Election timeout base: a follower waits a random time in [election, 2 * election).
    pub election_ms: Millis,
    /// Resend unanswered prepares, accepts and catch-up requests after this long.
    pub retransmit_ms: Millis,
    /// Slots in phase 2 at once.
    pub window: usize,
    /// Commands per slot at most.
    pub max_batch: usize,
    /// Decided values per catch-up message at most.
    pub catchup_batch: usize,
    /// Decided slots kept in memory behind the latest snapshot, for followers that lag a
    /// little; those further behind get the snapshot.
    pub log_keep: u64,
    /// Emit `Persist` records. A replica without stable storage turns this off, so the hot
    /// path does not build (and clone batches into) records nobody writes.
    pub durable: bool,
    /// Planted bug for testing the test harness: an acceptor also takes lower ballots.
    pub unsafe_accept_lower_ballots: bool,
    /// Planted bug for testing the test harness: a candidate leads without phase 1.
    pub unsafe_skip_phase1: bool,
    /// Ask a majority before running for leader (pre-vote). Off only in tests that show
    /// what it prevents.
    pub pre_vote: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            heartbeat_ms: 50,
            election_ms: 500,
            retransmit_ms: 200,
            window: 16,
            max_batch: 1024,
            catchup_batch: 512,
            log_keep: 10_000,
            durable: true,
            unsafe_accept_lower_ballots: false,
            unsafe_skip_phase1: false,
            pre_vote: true,
        }
    }
}

/// What the driver must do after a step, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: ReplicaId,
        msg: Message,
    },
    /// The value of `slot` is decided and every earlier slot was executed: apply it.
    Execute {
        slot: u64,
        value: SlotValue,
    },
    /// A membership change was executed; this is the new view.
    ViewChanged(View),
    /// Make this durable before performing any later output.
    Persist(Record),
    /// A snapshot from the leader replaces our state: restore the objects from it (and keep
    /// it as our own latest snapshot).
    Restore(Snapshot),
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica does not lead; `leader` is the one it follows, if any.
    NotLeader { leader: Option<ReplicaId> },
    /// A membership change is already under way.
    ChangeInProgress,
}

#[derive(Debug)]
struct Inflight {
    value: SlotValue,
    votes: BTreeSet<ReplicaId>,
    sent_ms: Millis,
}

#[derive(Debug)]
struct Candidacy {
    ballot: Ballot,
    view_number: u64,
    from_slot: u64,
    promises: BTreeMap<ReplicaId, (Vec<AcceptedEntry>, u64)>,
    sent_ms: Millis,
    give_up_ms: Millis,
}

#[derive(Debug)]
struct Leadership {
    ballot: Ballot,
    /// Until the leader has executed every slot some promiser had decided, it does not
    /// propose: its view might be stale.
    recovering: Option<Recovery>,
    next_slot: u64,
    inflight: BTreeMap<u64, Inflight>,
    queue: VecDeque<Command>,
    pending_change: Option<Reconfig>,
    /// Slot of an undecided membership change; nothing is proposed past it.
    change_slot: Option<u64>,
    last_heartbeat_ms: Millis,
    /// When each follower last answered, for stepping down without a majority.
    last_ack_ms: BTreeMap<ReplicaId, Millis>,
    /// Each follower's decided prefix as it last reported it (learners are promoted once
    /// theirs is close to ours).
    progress: BTreeMap<ReplicaId, u64>,
    since_ms: Millis,
}

#[derive(Debug)]
struct Recovery {
    view_number: u64,
    /// Execute up to here before proposing.
    catch_up_to: u64,
    /// Who has the decided values we lack.
    source: ReplicaId,
    /// Values to propose again, from the promises.
    values: BTreeMap<u64, SlotValue>,
    asked_ms: Millis,
    /// When the decided prefix last grew (or recovery began): a source that went quiet is
    /// given up on after a while.
    progress_ms: Millis,
    progress_slot: u64,
}

impl Recovery {
    fn new(
        view_number: u64,
        catch_up_to: u64,
        source: ReplicaId,
        values: BTreeMap<u64, SlotValue>,
        now: Millis,
    ) -> Recovery {
        Recovery {
            view_number,
            catch_up_to,
            source,
            values,
            asked_ms: now,
            progress_ms: now,
            progress_slot: 0,
        }
    }
}

/// A pre-vote under way: who would take part in an election of `round`.
#[derive(Debug)]
struct PreVote {
    round: u64,
    grants: BTreeSet<ReplicaId>,
}

#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Candidacy),
    Leader(Box<Leadership>),
}

/// The consensus state of one replica.
#[derive(Debug)]
pub struct Paxos {
    id: ReplicaId,
    cfg: Config,
    rng: u64,
    /// View as of the executed prefix; it decides who votes in the next slot.
    view: View,
    /// Acceptor: the highest ballot promised.
    promised: Ballot,
    /// Acceptor: accepted values of slots not yet decided here.
    accepted: BTreeMap<u64, (Ballot, SlotValue)>,
    /// Learner: decided values past the decided prefix (arrived out of order).
    decided_ahead: BTreeMap<u64, SlotValue>,
    /// Learner: the decided prefix, kept for catching others up; `log[i]` is slot
    /// `log_start + i`.
    log: Vec<SlotValue>,
    log_start: u64,
    /// View in force at `log_start`, so a replica that catches up from there replays the
    /// membership changes in order.
    log_start_view: View,
    decided_upto: u64,
    role: Role,
    /// The leader we follow, when we know one.
    leader: Option<ReplicaId>,
    last_heard_ms: Millis,
    election_deadline_ms: Millis,
    catchup_asked_ms: Option<Millis>,
    /// The largest decided prefix a leader has told us of; we catch up to it.
    catchup_target: u64,
    max_round_seen: u64,
    /// Client commands this replica queued as leader and keeps while it runs phase 1
    /// again (after a membership change); proposed once it leads again.
    carry: VecDeque<Command>,
    /// The latest snapshot, sent to replicas that need slots compacted away.
    snapshot: Option<Snapshot>,
    /// A follower's pre-vote, while it asks whether an election is wanted.
    pre_vote: Option<PreVote>,
}

impl Paxos {
    /// A replica whose state starts at slot 0 with `genesis` as the view (the founder, or
    /// a joiner that will replay the whole log).
    pub fn new(id: ReplicaId, genesis: View, cfg: Config, seed: u64, now: Millis) -> Paxos {
        let mut p = Paxos {
            id,
            cfg,
            rng: seed | 1,
            view: genesis.clone(),
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            decided_ahead: BTreeMap::new(),
            log: Vec::new(),
            log_start: 0,
            log_start_view: genesis,
            decided_upto: 0,
            role: Role::Follower,
            leader: None,
            last_heard_ms: now,
            election_deadline_ms: now,
            catchup_asked_ms: None,
            catchup_target: 0,
            max_round_seen: 0,
            carry: VecDeque::new(),
            snapshot: None,
            pre_vote: None,
        };
        p.reset_election_timer(now);
        p
    }

    /// Rebuilds a replica after a restart from what it had made durable. Outputs the
    /// executions that bring the objects back to the decided prefix (the caller restores
    /// the objects from the snapshot first).
    pub fn recover(
        id: ReplicaId,
        genesis: View,
        cfg: Config,
        seed: u64,
        now: Millis,
        durable: &Durable,
        out: &mut Vec<Output>,
    ) -> Paxos {
        let mut p = Paxos::new(id, genesis, cfg, seed, now);
        if let Some(snap) = &durable.snapshot {
            p.decided_upto = snap.slot;
            p.log_start = snap.slot;
            p.view = snap.view.clone();
            p.snapshot = Some(snap.clone());
        }
        let mut decided = BTreeMap::new();
        for r in &durable.records {
            match r {
                Record::Promised(b) => p.promised = p.promised.max(*b),
                Record::Accepted {
                    slot,
                    ballot,
                    value,
                } => {
                    p.promised = p.promised.max(*ballot);
                    if *slot >= p.decided_upto {
                        p.accepted.insert(*slot, (*ballot, value.clone()));
                    }
                }
                Record::Decided { slot, value } => {
                    let value = value
                        .clone()
                        .or_else(|| p.accepted.get(slot).map(|(_, v)| v.clone()));
                    if let Some(v) = value {
                        decided.insert(*slot, v);
                    }
                }
            }
        }
        p.max_round_seen = p.promised.round;
        for (slot, value) in decided {
            p.learn(now, slot, value, false, out);
        }
        p.role = Role::Follower;
        p.leader = None;
        p
    }

    /// The records that, written after a snapshot of slot `from_slot`, carry everything the
    /// snapshot does not: the promise, the slots decided since `from_slot` (a snapshot
    /// installed from the leader may be followed at once by slots we had decided), undecided
    /// accepted values, and decisions past the decided prefix.
    pub fn checkpoint_records(&self, from_slot: u64) -> Vec<Record> {
        let mut records = vec![Record::Promised(self.promised)];
        let start = from_slot.max(self.log_start);
        for slot in start..self.decided_upto {
            if let Some(value) = self.log.get((slot - self.log_start) as usize) {
                records.push(Record::Decided {
                    slot,
                    value: Some(value.clone()),
                });
            }
        }
        for (&slot, (ballot, value)) in &self.accepted {
            records.push(Record::Accepted {
                slot,
                ballot: *ballot,
                value: value.clone(),
            });
        }
        for (&slot, value) in &self.decided_ahead {
            records.push(Record::Decided {
                slot,
                value: Some(value.clone()),
            });
        }
        records
    }

    /// Keeps `snapshot` (taken at the decided prefix) for state transfer and forgets
    /// decided values older than `log_keep` slots behind it.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let keep_from = snapshot.slot.saturating_sub(self.cfg.log_keep);
        if keep_from > self.log_start {
            let drop = ((keep_from - self.log_start) as usize).min(self.log.len());
            self.log.drain(..drop);
            self.log_start += drop as u64;
        }
        self.snapshot = Some(snapshot);
    }

    /// First slot still held in memory for catch-up.
    pub fn log_start(&self) -> u64 {
        self.log_start
    }

    /// Leader only: asks the most recently heard follower to take over at once and steps
    /// down. Returns the successor.
    pub fn hand_over(&mut self, now: Millis, out: &mut Vec<Output>) -> Option<ReplicaId> {
        let Role::Leader(l) = &self.role else {
            return None;
        };
        let ballot = l.ballot;
        let successor = l
            .last_ack_ms
            .iter()
            .filter(|(id, _)| self.view.contains(**id) && **id != self.id)
            .max_by_key(|(_, t)| **t)
            .map(|(id, _)| *id)?;
        out.push(Output::Send {
            to: successor,
            msg: Message::TakeOver { ballot },
        });
        self.step_down(now, Some(successor));
        Some(successor)
    }

    pub fn id(&self) -> ReplicaId {
        self.id
    }
    pub fn view(&self) -> &View {
        &self.view
    }
    pub fn genesis_view(&self) -> &View {
        &self.log_start_view
    }
    pub fn decided_upto(&self) -> u64 {
        self.decided_upto
    }
    pub fn promised(&self) -> Ballot {
        self.promised
    }
    /// Whether this replica is running for leader (commands it queued wait for the result).
    pub fn is_candidate(&self) -> bool {
        matches!(&self.role, Role::Candidate(_))
    }
    pub fn is_leader(&self) -> bool {
        matches!(&self.role, Role::Leader(l) if l.recovering.is_none())
    }
    /// The ballot this replica leads with, or follows.
    pub fn ballot(&self) -> Ballot {
        match &self.role {
            Role::Leader(l) => l.ballot,
            Role::Candidate(c) => c.ballot,
            Role::Follower => self.promised,
        }
    }
    /// The leader as this replica knows it (itself when leading).
    pub fn leader(&self) -> Option<ReplicaId> {
        match &self.role {
            Role::Leader(_) => Some(self.id),
            _ => self.leader,
        }
    }
    /// Commands accepted from clients but not yet decided here.
    pub fn queued(&self) -> usize {
        match &self.role {
            Role::Leader(l) => l.queue.len(),
            _ => 0,
        }
    }
    /// Whether a membership change is proposed or waiting to be.
    pub fn change_in_progress(&self) -> bool {
        matches!(&self.role, Role::Leader(l) if l.pending_change.is_some() || l.change_slot.is_some())
    }

    /// Founds a group of one: becomes leader at once with the lowest ballot and proposes
    /// `first` (the default object, say) in slot 0.
    pub fn found(&mut self, now: Millis, first: Vec<Command>, out: &mut Vec<Output>) {
        let ballot = Ballot {
            round: 1,
            leader: self.id,
        };
        self.max_round_seen = 1;
        self.promised = ballot;
        self.persist(out, || Record::Promised(ballot));
        self.carry.extend(first);
        self.lead_at_once(now, ballot, out);
    }

    /// Leads with `ballot` without phase 1: nothing to recover (a founder, or the planted
    /// bug that skips phase 1).
    fn lead_at_once(&mut self, now: Millis, ballot: Ballot, out: &mut Vec<Output>) {
        let recovery = Recovery::new(
            self.view.number,
            self.decided_upto,
            self.id,
            BTreeMap::new(),
            now,
        );
        self.become_leader(now, ballot, recovery);
        self.after_progress(now, out);
    }

    /// Queues a client command. Only the leader takes commands.
    pub fn propose(
        &mut self,
        now: Millis,
        cmd: Command,
        out: &mut Vec<Output>,
    ) -> Result<(), ProposeError> {
        match &mut self.role {
            Role::Leader(l) => {
                l.queue.push_back(cmd);
            }
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: self.leader,
                });
            }
        }
        self.fill_window(now, out);
        Ok(())
    }

    /// Proposes a membership change; one at a time.
    pub fn propose_change(
        &mut self,
        now: Millis,
        change: Reconfig,
        out: &mut Vec<Output>,
    ) -> Result<(), ProposeError> {
        match &mut self.role {
            Role::Leader(l) if l.recovering.is_none() => {
                if l.pending_change.is_some() || l.change_slot.is_some() {
                    return Err(ProposeError::ChangeInProgress);
                }
                l.pending_change = Some(change);
            }
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: self.leader,
                });
            }
        }
        self.fill_window(now, out);
        Ok(())
    }

    /// Handles a message from another replica.
    pub fn receive(&mut self, now: Millis, from: ReplicaId, msg: Message, out: &mut Vec<Output>) {
        // Ids are never reused: one below `next_id` that is no longer in the view belongs to
        // a removed replica. It may not know yet and keep running elections; its ballots
        // must not depose our leader. Its prepare is answered with the decided log instead,
        // from which it learns of its removal and goes quiet.
        if from < self.view.next_id && !self.view.knows(from) {
            match msg {
                Message::Prepare { from_slot, .. } | Message::CatchUp { from_slot } => {
                    self.on_catch_up(from, from_slot, out)
                }
                _ => {}
            }
            return;
        }
        match msg {
            Message::Prepare { ballot, from_slot } => {
                self.on_prepare(now, from, ballot, from_slot, out)
            }
            Message::Promise {
                ballot,
                accepted,
                decided_upto,
            } => self.on_promise(now, from, ballot, accepted, decided_upto, out),
            Message::Nack { ballot, promised } => self.on_nack(now, ballot, promised),
            Message::Accept {
                ballot,
                slot,
                value,
                decided_upto,
            } => self.on_accept(now, from, ballot, slot, value, decided_upto, out),
            Message::Accepted { ballot, slot } => self.on_accepted(now, from, ballot, slot, out),
            Message::Heartbeat {
                ballot,
                decided_upto,
            } => self.on_heartbeat(now, from, ballot, decided_upto, out),
            Message::HeartbeatAck {
                ballot,
                decided_upto,
            } => {
                if let Role::Leader(l) = &mut self.role
                    && l.ballot == ballot
                {
                    l.last_ack_ms.insert(from, now);
                    l.progress.insert(from, decided_upto);
                }
            }
            Message::CatchUp { from_slot } => self.on_catch_up(from, from_slot, out),
            Message::InstallSnapshot { snapshot } => self.install(now, from, snapshot, out),
            Message::PreVote {
                round,
                decided_upto,
            } => self.on_pre_vote(now, from, round, decided_upto, out),
            Message::PreVoteReply { round, granted } => {
                self.on_pre_vote_reply(now, from, round, granted, out)
            }
            Message::TakeOver { ballot } => {
                // Only the leader we follow may hand over to us; no pre-vote: the leader
                // itself asked, and the others still hear from it.
                if ballot == self.promised
                    && self.leader == Some(from)
                    && self.view.contains(self.id)
                    && matches!(self.role, Role::Follower)
                {
                    self.start_candidacy(now, out);
                }
            }
            Message::Decided { first_slot, values } => {
                let got = !values.is_empty();
                for (i, value) in values.into_iter().enumerate() {
                    let Some(slot) = first_slot.checked_add(i as u64) else {
                        break;
                    };
                    self.learn(now, slot, value, true, out);
                }
                self.catchup_asked_ms = None;
                self.after_progress(now, out);
                // Far behind: ask for the next batch at once rather than per heartbeat.
                if got && self.decided_upto < self.catchup_target {
                    self.catchup_asked_ms = Some(now);
                    out.push(Output::Send {
                        to: from,
                        msg: Message::CatchUp {
                            from_slot: self.decided_upto,
                        },
                    });
                }
            }
        }
    }

    /// Advances timers: heartbeats, retransmissions, elections.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Output>) {
        match &self.role {
            Role::Follower => {
                if now >= self.election_deadline_ms && self.view.contains(self.id) {
                    if self.cfg.pre_vote {
                        self.start_pre_vote(now, out);
                    } else {
                        self.start_candidacy(now, out);
                    }
                }
            }
            Role::Candidate(c) => {
                if now >= c.give_up_ms {
                    self.start_candidacy(now, out);
                } else if now.saturating_sub(c.sent_ms) >= self.cfg.retransmit_ms {
                    let (ballot, from_slot) = (c.ballot, c.from_slot);
                    let waiting: Vec<ReplicaId> = self
                        .others()
                        .filter(|id| !c.promises.contains_key(id))
                        .collect();
                    for to in waiting {
                        out.push(Output::Send {
                            to,
                            msg: Message::Prepare { ballot, from_slot },
                        });
                    }
                    if let Role::Candidate(c) = &mut self.role {
                        c.sent_ms = now;
                    }
                }
            }
            Role::Leader(_) => {
                self.leader_tick(now, out);
                self.fill_window(now, out);
            }
        }
    }

    fn leader_tick(&mut self, now: Millis, out: &mut Vec<Output>) {
        let others: Vec<ReplicaId> = self.others().collect();
        let voters: Vec<ReplicaId> = others
            .iter()
            .copied()
            .filter(|id| self.view.contains(*id))
            .collect();
        let learners: Vec<ReplicaId> = self.view.learners.keys().copied().collect();
        let majority = self.view.majority();
        let cfg = self.cfg.clone();
        let decided_upto = self.decided_upto;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        // A leader that has not heard from a majority for a while steps down, so clients
        // cut off with it are redirected instead of waiting forever.
        let live = 1 + voters
            .iter()
            .filter(|id| {
                l.last_ack_ms
                    .get(id)
                    .is_some_and(|t| now.saturating_sub(*t) < 2 * cfg.election_ms)
            })
            .count();
        if live < majority && now.saturating_sub(l.since_ms) >= 2 * cfg.election_ms {
            self.step_down(now, None);
            return;
        }
        // A learner that has caught up becomes a voter (one change at a time).
        if l.recovering.is_none() && l.pending_change.is_none() && l.change_slot.is_none() {
            let close = decided_upto.saturating_sub(cfg.window as u64);
            if let Some(id) = learners
                .iter()
                .find(|id| l.progress.get(id).is_some_and(|p| *p >= close))
            {
                l.pending_change = Some(Reconfig::Promote { id: *id });
            }
        }
        if now.saturating_sub(l.last_heartbeat_ms) >= cfg.heartbeat_ms {
            l.last_heartbeat_ms = now;
            for &to in &others {
                out.push(Output::Send {
                    to,
                    msg: Message::Heartbeat {
                        ballot: l.ballot,
                        decided_upto,
                    },
                });
            }
        }
        if let Some(r) = &mut l.recovering {
            if decided_upto > r.progress_slot {
                r.progress_slot = decided_upto;
                r.progress_ms = now;
            } else if now.saturating_sub(r.progress_ms) >= 2 * cfg.election_ms {
                // The replica we catch up from went quiet (crashed, cut off). Phase 1 again
                // finds a live majority, and with it what is decided.
                self.carry = std::mem::take(&mut l.queue);
                self.start_candidacy(now, out);
                return;
            }
            if now.saturating_sub(r.asked_ms) >= cfg.retransmit_ms {
                r.asked_ms = now;
                out.push(Output::Send {
                    to: r.source,
                    msg: Message::CatchUp {
                        from_slot: decided_upto,
                    },
                });
            }
            return;
        }
        for (&slot, f) in l.inflight.iter_mut() {
            if now.saturating_sub(f.sent_ms) >= cfg.retransmit_ms {
                f.sent_ms = now;
                for &to in &others {
                    if !f.votes.contains(&to) {
                        out.push(Output::Send {
                            to,
                            msg: Message::Accept {
                                ballot: l.ballot,
                                slot,
                                value: f.value.clone(),
                                decided_upto,
                            },
                        });
                    }
                }
            }
        }
    }

    /// Asks the driver to make `record` durable (built only when anything is kept).
    fn persist(&self, out: &mut Vec<Output>, record: impl FnOnce() -> Record) {
        if self.cfg.durable {
            out.push(Output::Persist(record()));
        }
    }

    // ----- acceptor -----

    /// Tells the sender of a stale `ballot` what we promised instead.
    fn nack(&self, to: ReplicaId, ballot: Ballot, out: &mut Vec<Output>) {
        out.push(Output::Send {
            to,
            msg: Message::Nack {
                ballot,
                promised: self.promised,
            },
        });
    }

    fn on_prepare(
        &mut self,
        now: Millis,
        from: ReplicaId,
        ballot: Ballot,
        from_slot: u64,
        out: &mut Vec<Output>,
    ) {
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        if ballot < self.promised && !self.cfg.unsafe_accept_lower_ballots {
            self.nack(from, ballot, out);
            return;
        }
        if ballot > self.promised {
            self.promised = ballot;
            self.persist(out, || Record::Promised(ballot));
            if self.ballot() < ballot {
                self.step_down(now, Some(ballot.leader));
            }
        }
        // A candidate is alive: give it time to finish before running ourselves.
        self.last_heard_ms = now;
        self.reset_election_timer(now);
        let accepted = self
            .accepted
            .range(from_slot..)
            .map(|(&slot, (b, v))| AcceptedEntry {
                slot,
                ballot: *b,
                value: v.clone(),
            })
            .collect();
        out.push(Output::Send {
            to: from,
            msg: Message::Promise {
                ballot,
                accepted,
                decided_upto: self.decided_upto,
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_accept(
        &mut self,
        now: Millis,
        from: ReplicaId,
        ballot: Ballot,
        slot: u64,
        value: SlotValue,
        leader_decided_upto: u64,
        out: &mut Vec<Output>,
    ) {
        if !self.follow(now, ballot) {
            self.nack(from, ballot, out);
            return;
        }
        if slot >= self.decided_upto && !self.decided_ahead.contains_key(&slot) {
            self.persist(out, || Record::Accepted {
                slot,
                ballot,
                value: value.clone(),
            });
            self.accepted.insert(slot, (ballot, value));
        }
        out.push(Output::Send {
            to: from,
            msg: Message::Accepted { ballot, slot },
        });
        self.learn_commit(now, from, ballot, leader_decided_upto, out);
    }

    fn on_heartbeat(
        &mut self,
        now: Millis,
        from: ReplicaId,
        ballot: Ballot,
        leader_decided_upto: u64,
        out: &mut Vec<Output>,
    ) {
        if !self.follow(now, ballot) {
            self.nack(from, ballot, out);
            return;
        }
        self.learn_commit(now, from, ballot, leader_decided_upto, out);
        out.push(Output::Send {
            to: from,
            msg: Message::HeartbeatAck {
                ballot,
                decided_upto: self.decided_upto,
            },
        });
    }

    /// Takes `ballot`'s leader as ours if it is at least our promise. Returns false for a
    /// stale leader.
    fn follow(&mut self, now: Millis, ballot: Ballot) -> bool {
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        if ballot < self.promised && !self.cfg.unsafe_accept_lower_ballots {
            return false;
        }
        self.promised = self.promised.max(ballot);
        if ballot.leader != self.id && self.ballot() < ballot {
            self.step_down(now, Some(ballot.leader));
        }
        if ballot.leader != self.id {
            self.leader = Some(ballot.leader);
            // A leader is alive: no election wanted.
            self.pre_vote = None;
        }
        self.last_heard_ms = now;
        self.reset_election_timer(now);
        true
    }

    /// Slots below the leader's decided prefix whose value we accepted in the leader's
    /// ballot are decided with that value; for any others we ask the leader.
    fn learn_commit(
        &mut self,
        now: Millis,
        leader: ReplicaId,
        ballot: Ballot,
        leader_decided_upto: u64,
        out: &mut Vec<Output>,
    ) {
        self.catchup_target = self.catchup_target.max(leader_decided_upto);
        if leader_decided_upto <= self.decided_upto {
            return;
        }
        let learned: Vec<(u64, SlotValue)> = self
            .accepted
            .range(self.decided_upto..leader_decided_upto)
            .filter(|(_, (b, _))| *b == ballot)
            .map(|(&s, (_, v))| (s, v.clone()))
            .collect();
        for (slot, value) in learned {
            self.learn(now, slot, value, true, out);
        }
        self.after_progress(now, out);
        if self.decided_upto < leader_decided_upto {
            let due = self
                .catchup_asked_ms
                .is_none_or(|t| now.saturating_sub(t) >= self.cfg.retransmit_ms);
            if due {
                self.catchup_asked_ms = Some(now);
                out.push(Output::Send {
                    to: leader,
                    msg: Message::CatchUp {
                        from_slot: self.decided_upto,
                    },
                });
            }
        }
    }

    fn on_catch_up(&mut self, from: ReplicaId, from_slot: u64, out: &mut Vec<Output>) {
        if from_slot < self.log_start {
            if let Some(snapshot) = &self.snapshot {
                out.push(Output::Send {
                    to: from,
                    msg: Message::InstallSnapshot {
                        snapshot: snapshot.clone(),
                    },
                });
            }
            return;
        }
        if from_slot >= self.decided_upto {
            return;
        }
        let start = (from_slot - self.log_start) as usize;
        let end = (start + self.cfg.catchup_batch).min(self.log.len());
        out.push(Output::Send {
            to: from,
            msg: Message::Decided {
                first_slot: from_slot,
                values: self.log[start..end].to_vec(),
            },
        });
    }

    // ----- pre-vote -----

    /// The election timer ran out: ask the others whether they, too, miss the leader. Only
    /// a majority's yes starts a real candidacy (which raises ballots and so deposes).
    fn start_pre_vote(&mut self, now: Millis, out: &mut Vec<Output>) {
        let round = self.max_round_seen.max(self.promised.round) + 1;
        self.pre_vote = Some(PreVote {
            round,
            grants: BTreeSet::from([self.id]),
        });
        // Unanswered, the next timeout asks again.
        self.reset_election_timer(now);
        for to in self.others().collect::<Vec<_>>() {
            out.push(Output::Send {
                to,
                msg: Message::PreVote {
                    round,
                    decided_upto: self.decided_upto,
                },
            });
        }
        self.check_pre_votes(now, out);
    }

    /// Grants a pre-vote only when this replica misses a leader too: it is not leading and
    /// has heard from no leader or candidate for the minimum election timeout. It also
    /// prefers a candidate whose decided prefix is not far behind its own (that one would
    /// spend its first moments as leader catching up). Changes nothing here either way.
    fn on_pre_vote(
        &mut self,
        now: Millis,
        from: ReplicaId,
        round: u64,
        decided_upto: u64,
        out: &mut Vec<Output>,
    ) {
        let close_enough = decided_upto >= self.decided_upto.saturating_sub(self.cfg.window as u64);
        let granted = self.view.contains(from)
            && !matches!(self.role, Role::Leader(_))
            && now.saturating_sub(self.last_heard_ms) >= self.cfg.election_ms
            && close_enough;
        out.push(Output::Send {
            to: from,
            msg: Message::PreVoteReply { round, granted },
        });
    }

    fn on_pre_vote_reply(
        &mut self,
        now: Millis,
        from: ReplicaId,
        round: u64,
        granted: bool,
        out: &mut Vec<Output>,
    ) {
        if !granted || !self.view.contains(from) || !matches!(self.role, Role::Follower) {
            return;
        }
        if let Some(p) = &mut self.pre_vote
            && p.round == round
        {
            p.grants.insert(from);
            self.check_pre_votes(now, out);
        }
    }

    fn check_pre_votes(&mut self, now: Millis, out: &mut Vec<Output>) {
        let Some(p) = &self.pre_vote else {
            return;
        };
        let granted = p
            .grants
            .iter()
            .filter(|id| self.view.contains(**id))
            .count();
        if granted >= self.view.majority() {
            self.start_candidacy(now, out);
        }
    }

    // ----- candidate -----

    fn start_candidacy(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.pre_vote = None;
        let round = self.max_round_seen.max(self.promised.round) + 1;
        self.max_round_seen = round;
        let ballot = Ballot {
            round,
            leader: self.id,
        };
        self.promised = ballot;
        self.persist(out, || Record::Promised(ballot));
        self.leader = None;
        let timeout = self.random_election_timeout();
        let from_slot = self.decided_upto;
        let mut promises = BTreeMap::new();
        let own: Vec<AcceptedEntry> = self
            .accepted
            .range(from_slot..)
            .map(|(&slot, (b, v))| AcceptedEntry {
                slot,
                ballot: *b,
                value: v.clone(),
            })
            .collect();
        promises.insert(self.id, (own, self.decided_upto));
        self.role = Role::Candidate(Candidacy {
            ballot,
            view_number: self.view.number,
            from_slot,
            promises,
            sent_ms: now,
            give_up_ms: now + timeout,
        });
        if self.cfg.unsafe_skip_phase1 {
            self.lead_at_once(now, ballot, out);
            return;
        }
        for to in self.others().collect::<Vec<_>>() {
            out.push(Output::Send {
                to,
                msg: Message::Prepare { ballot, from_slot },
            });
        }
        self.check_promises(now, out);
    }

    fn on_promise(
        &mut self,
        now: Millis,
        from: ReplicaId,
        ballot: Ballot,
        accepted: Vec<AcceptedEntry>,
        decided_upto: u64,
        out: &mut Vec<Output>,
    ) {
        let in_view = self.view.contains(from);
        if let Role::Candidate(c) = &mut self.role
            && c.ballot == ballot
            && in_view
        {
            c.promises.insert(from, (accepted, decided_upto));
            self.check_promises(now, out);
        }
    }

    fn check_promises(&mut self, now: Millis, out: &mut Vec<Output>) {
        let majority = self.view.majority();
        let Role::Candidate(c) = &self.role else {
            return;
        };
        let count = c
            .promises
            .keys()
            .filter(|id| self.view.contains(**id))
            .count();
        if count < majority {
            return;
        }
        let ballot = c.ballot;
        let (source, max_decided) = c
            .promises
            .iter()
            .map(|(id, (_, d))| (*id, *d))
            .max_by_key(|(_, d)| *d)
            .unwrap_or((self.id, self.decided_upto));
        // Per slot, the value accepted with the highest ballot must be proposed again.
        let mut best: BTreeMap<u64, (Ballot, SlotValue)> = BTreeMap::new();
        // No honest acceptor holds a value this far past every decided prefix (leaders
        // pipeline a window at a time); a bogus far slot must not make us fill noops up to it.
        let horizon = max_decided.saturating_add(64 * self.cfg.window as u64 + 1024);
        for (entries, _) in c.promises.values() {
            for e in entries.iter().filter(|e| e.slot <= horizon) {
                let replace = best.get(&e.slot).is_none_or(|(b, _)| e.ballot > *b);
                if replace {
                    best.insert(e.slot, (e.ballot, e.value.clone()));
                }
            }
        }
        let recovery = Recovery {
            view_number: c.view_number,
            catch_up_to: max_decided,
            source,
            values: best.into_iter().map(|(s, (_, v))| (s, v)).collect(),
            asked_ms: now,
            progress_ms: now,
            progress_slot: 0,
        };
        self.become_leader(now, ballot, recovery);
        self.catchup_target = self.catchup_target.max(max_decided);
        if self.decided_upto < max_decided {
            out.push(Output::Send {
                to: source,
                msg: Message::CatchUp {
                    from_slot: self.decided_upto,
                },
            });
        }
        self.after_progress(now, out);
    }

    fn on_nack(&mut self, now: Millis, ballot: Ballot, promised: Ballot) {
        self.max_round_seen = self.max_round_seen.max(promised.round);
        let mine = match &self.role {
            Role::Leader(l) => l.ballot,
            Role::Candidate(c) => c.ballot,
            Role::Follower => return,
        };
        if ballot == mine && promised > mine {
            self.promised = self.promised.max(promised);
            self.step_down(now, Some(promised.leader));
        }
    }

    // ----- leader -----

    fn become_leader(&mut self, now: Millis, ballot: Ballot, recovery: Recovery) {
        self.leader = Some(self.id);
        self.role = Role::Leader(Box::new(Leadership {
            ballot,
            next_slot: recovery.catch_up_to.max(self.decided_upto),
            recovering: Some(recovery),
            inflight: BTreeMap::new(),
            queue: std::mem::take(&mut self.carry),
            pending_change: None,
            change_slot: None,
            last_heartbeat_ms: 0,
            last_ack_ms: BTreeMap::new(),
            progress: BTreeMap::new(),
            since_ms: now,
        }));
    }

    /// Called whenever the decided prefix may have grown: finishes a leader's recovery and
    /// refills the pipeline.
    fn after_progress(&mut self, now: Millis, out: &mut Vec<Output>) {
        let decided_upto = self.decided_upto;
        let view_number = self.view.number;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let Some(r) = &l.recovering else {
            self.fill_window(now, out);
            return;
        };
        if decided_upto < r.catch_up_to {
            return;
        }
        if r.view_number != view_number {
            // The view changed while we caught up: our phase 1 quorum was of the old one.
            self.carry = std::mem::take(&mut l.queue);
            self.start_candidacy(now, out);
            return;
        }
        let Some(r) = l.recovering.take() else {
            return;
        };
        l.next_slot = decided_upto;
        let last = r.values.keys().next_back().copied();
        if let Some(last) = last {
            for slot in decided_upto..=last {
                let value = r.values.get(&slot).cloned().unwrap_or(SlotValue::Noop);
                let is_change = matches!(value, SlotValue::Reconfig(_));
                self.propose_slot(now, slot, value, out);
                if is_change {
                    // Values past a change belong to the next view's phase 1.
                    if let Role::Leader(l) = &mut self.role {
                        l.change_slot = Some(slot);
                    }
                    break;
                }
            }
        }
        // Announce leadership right away so followers stop their elections.
        if let Role::Leader(l) = &mut self.role {
            l.last_heartbeat_ms = 0;
        }
        self.leader_tick(now, out);
        self.fill_window(now, out);
    }

    fn fill_window(&mut self, now: Millis, out: &mut Vec<Output>) {
        loop {
            let Role::Leader(l) = &mut self.role else {
                return;
            };
            if l.recovering.is_some()
                || l.change_slot.is_some()
                || l.inflight.len() >= self.cfg.window
            {
                return;
            }
            let slot = l.next_slot;
            let value = if let Some(change) = l.pending_change.take() {
                l.change_slot = Some(slot);
                SlotValue::Reconfig(change)
            } else if !l.queue.is_empty() {
                let n = l.queue.len().min(self.cfg.max_batch);
                SlotValue::Batch(l.queue.drain(..n).collect())
            } else {
                return;
            };
            self.propose_slot(now, slot, value, out);
        }
    }

    fn propose_slot(&mut self, now: Millis, slot: u64, value: SlotValue, out: &mut Vec<Output>) {
        let others: Vec<ReplicaId> = self.others().collect();
        let decided_upto = self.decided_upto;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        l.next_slot = l.next_slot.max(slot + 1);
        for &to in &others {
            out.push(Output::Send {
                to,
                msg: Message::Accept {
                    ballot,
                    slot,
                    value: value.clone(),
                    decided_upto,
                },
            });
        }
        let mut votes = BTreeSet::new();
        votes.insert(self.id);
        // (`l` holds the role, so the field is read directly rather than via persist().)
        if self.cfg.durable {
            out.push(Output::Persist(Record::Accepted {
                slot,
                ballot,
                value: value.clone(),
            }));
        }
        self.accepted.insert(slot, (ballot, value.clone()));
        l.inflight.insert(
            slot,
            Inflight {
                value,
                votes,
                sent_ms: now,
            },
        );
        self.check_votes(now, slot, out);
    }

    fn on_accepted(
        &mut self,
        now: Millis,
        from: ReplicaId,
        ballot: Ballot,
        slot: u64,
        out: &mut Vec<Output>,
    ) {
        let in_view = self.view.contains(from);
        if let Role::Leader(l) = &mut self.role
            && l.ballot == ballot
            && in_view
        {
            l.last_ack_ms.insert(from, now);
            if let Some(f) = l.inflight.get_mut(&slot) {
                f.votes.insert(from);
                self.check_votes(now, slot, out);
                self.after_progress(now, out);
            }
        }
    }

    fn check_votes(&mut self, now: Millis, slot: u64, out: &mut Vec<Output>) {
        let majority = self.view.majority();
        let view = &self.view;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let chosen = l
            .inflight
            .get(&slot)
            .is_some_and(|f| f.votes.iter().filter(|id| view.contains(**id)).count() >= majority);
        if chosen && let Some(f) = l.inflight.remove(&slot) {
            self.learn(now, slot, f.value, true, out);
        }
    }

    fn step_down(&mut self, now: Millis, leader: Option<ReplicaId>) {
        // Queued commands are dropped; their clients retry with the same session and
        // sequence at the new leader, so nothing runs twice.
        self.carry.clear();
        self.role = Role::Follower;
        self.pre_vote = None;
        self.leader = leader;
        self.last_heard_ms = now;
        self.reset_election_timer(now);
    }

    // ----- learner -----

    /// `slot` is decided with `value`: record it and execute every slot now contiguous.
    fn learn(
        &mut self,
        now: Millis,
        slot: u64,
        value: SlotValue,
        persist: bool,
        out: &mut Vec<Output>,
    ) {
        if slot < self.decided_upto || self.decided_ahead.contains_key(&slot) {
            return;
        }
        if persist {
            // Usually we accepted this very value: say so instead of writing it twice.
            self.persist(out, || {
                let same = self.accepted.get(&slot).is_some_and(|(_, v)| *v == value);
                Record::Decided {
                    slot,
                    value: (!same).then(|| value.clone()),
                }
            });
        }
        self.decided_ahead.insert(slot, value);
        self.execute_ready(now, out);
    }

    /// Executes decided slots that follow the decided prefix.
    fn execute_ready(&mut self, now: Millis, out: &mut Vec<Output>) {
        while let Some(value) = self.decided_ahead.remove(&self.decided_upto) {
            let slot = self.decided_upto;
            self.accepted.remove(&slot);
            self.decided_upto += 1;
            self.log.push(value.clone());
            if let SlotValue::Reconfig(change) = &value {
                self.view = self.view.apply(change);
                // A removed member gets no more messages from the new view: tell it now
                // that its removal is decided, so it stops serving instead of redirecting.
                if let (Reconfig::Remove { id }, Role::Leader(l)) = (change, &self.role)
                    && *id != self.id
                {
                    out.push(Output::Send {
                        to: *id,
                        msg: Message::Heartbeat {
                            ballot: l.ballot,
                            decided_upto: self.decided_upto,
                        },
                    });
                }
                out.push(Output::Execute { slot, value });
                out.push(Output::ViewChanged(self.view.clone()));
                self.after_change(now, out);
            } else {
                out.push(Output::Execute { slot, value });
            }
        }
    }

    /// Replaces everything below the snapshot's slot with the snapshot (we were too far
    /// behind for the leader's log).
    fn install(&mut self, now: Millis, from: ReplicaId, snapshot: Snapshot, out: &mut Vec<Output>) {
        if snapshot.slot <= self.decided_upto {
            return;
        }
        // A leader that is not catching up after its election yet is behind a snapshot is
        // stale: its pipeline and heartbeats would speak for slots decided without it.
        if let Role::Leader(l) = &self.role
            && l.recovering.is_none()
        {
            self.step_down(now, None);
        }
        let slot = snapshot.slot;
        self.decided_upto = slot;
        self.log.clear();
        self.log_start = slot;
        self.accepted = self.accepted.split_off(&slot);
        self.decided_ahead = self.decided_ahead.split_off(&slot);
        self.view = snapshot.view.clone();
        self.snapshot = Some(snapshot.clone());
        out.push(Output::Restore(snapshot));
        out.push(Output::ViewChanged(self.view.clone()));
        self.execute_ready(now, out);
        // A new leader catching up through a snapshot finishes its recovery here.
        self.after_progress(now, out);
        self.catchup_asked_ms = None;
        if self.decided_upto < self.catchup_target {
            self.catchup_asked_ms = Some(now);
            out.push(Output::Send {
                to: from,
                msg: Message::CatchUp {
                    from_slot: self.decided_upto,
                },
            });
        }
    }

    /// A membership change was executed.
    fn after_change(&mut self, now: Millis, out: &mut Vec<Output>) {
        if !self.view.contains(self.id) {
            // Removed: stop voting and leading; the runtime stops serving.
            self.carry.clear();
            self.role = Role::Follower;
            self.leader = None;
            return;
        }
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        // A recovering leader notices the new view itself once it has caught up.
        if l.recovering.is_none() {
            // Run phase 1 again in the new view, keeping the queued commands.
            self.carry = std::mem::take(&mut l.queue);
            self.start_candidacy(now, out);
        }
    }

    // ----- helpers -----

    /// Everyone but us that should hear from a leader: voting members and learners.
    fn others(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.view
            .everyone()
            .map(|(id, _)| id)
            .filter(move |id| *id != self.id)
    }

    fn reset_election_timer(&mut self, now: Millis) {
        let timeout = self.random_election_timeout();
        self.election_deadline_ms = now + timeout;
    }

    fn random_election_timeout(&mut self) -> Millis {
        // xorshift64*: deterministic for a given seed, which the simulator relies on.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        self.cfg.election_ms + r % self.cfg.election_ms.max(1)
    }
}
