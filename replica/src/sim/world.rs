//! The simulated world: hosts running real nodes, their disks, the network between them,
//! the clients, an administrator, and the faults. One event queue ordered by (virtual
//! time, sequence number) drives everything; one RNG makes every choice.

use super::client::{Audit, SimClient};
use super::rng::Rng;
use super::trace::{self, M, Trace};
use super::{Failure, FailureKind, Report, SimConfig, Stats};
use crate::command::{Command, ReplicaId, Value, View};
use crate::linearizability::{self, Call, CallId, CounterCall, History, ObjectSpec, Outcome, Val};
use crate::net::wire::{ClientFrame, MembershipChange, MembershipReply, PeerFrame, ReplicaFrame};
use crate::node::{Action, ConnId, Node};
use crate::paxos::{Durable, Message};
use crate::state::StateMachine;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The objects clients call, with how they start.
pub(super) const COUNTER: &str = "counter";
/// An object of a user-defined type: the seed's TenCounter, run by the sandboxed
/// interpreter of every replica.
pub(super) const TEN: &str = "tencounter";
const TEN_COUNTER_SOURCE: &str = "class TenCounter:\n    def __init__(self, value=0):\n        self.value = value\n\n    def decrement(self):\n        self.value -= 10\n\n    def increment(self):\n        self.value += 10\n\n    def getvalue(self):\n        return self.value\n\n    def __str__(self):\n        return \"The counter value is %d\" % self.value\n";
pub(super) const DICT: &str = "dict";
pub(super) const QUEUE: &str = "queue";
pub(super) const LOCK: &str = "lock";
pub(super) const SEMAPHORE: &str = "sem";
pub(super) const QUEUE_MAXSIZE: u64 = 4;
pub(super) const PERMITS: u64 = 2;
pub(super) const DICT_KEYS: [&str; 3] = ["a", "b", "c"];

/// Node timers run this often (as in the runtime).
const TICK_MS: u64 = 10;
/// Clients look at their timers this often.
pub(super) const CLIENT_WAKE_MS: u64 = 20;
/// A joiner that heard nothing retries after this long.
const JOIN_TIMEOUT_MS: u64 = 1_500;
/// The administrator retries a membership change that got no answer after this long.
const ADMIN_TIMEOUT_MS: u64 = 2_000;
/// After the faults end: quiet time before the final reads.
const QUIET_MS: u64 = 2_500;
/// The group must form within this long, and serve the final reads within this long
/// after healing; more is a liveness failure.
const FORM_DEADLINE_MS: u64 = 30_000;
const AUDIT_DEADLINE_MS: u64 = 60_000;
/// Replicas must agree this long after the final reads.
const CONVERGE_MS: u64 = 20_000;
/// A runaway run stops here.
const MAX_EVENTS: u64 = 20_000_000;
/// Voting members plus learners at most (membership changes stay below).
const MAX_GROUP: usize = 5;
const MIN_VOTERS: usize = 3;

pub(super) enum Ev {
    Tick {
        host: usize,
        inc: u64,
    },
    Peer {
        from: usize,
        from_id: ReplicaId,
        to: usize,
        msg: Message,
    },
    ToReplica {
        conn: ConnId,
        frame: ClientFrame,
    },
    ToEndpoint {
        conn: ConnId,
        frame: ReplicaFrame,
    },
    Connected {
        conn: ConnId,
        ok: bool,
    },
    LinkLost {
        conn: ConnId,
    },
    Closed {
        host: usize,
        conn: ConnId,
    },
    Join {
        conn: ConnId,
    },
    JoinReply {
        conn: ConnId,
        frame: PeerFrame,
    },
    JoinRetry {
        host: usize,
        attempt: u64,
        target: Option<usize>,
    },
    ClientWake {
        client: usize,
    },
    AdminRetry {
        attempt: u64,
        target: Option<usize>,
    },
    Restart {
        host: usize,
        inc: u64,
    },
    CheckFormed,
    Chaos,
    EndFaults,
    StartAudit,
    AuditDeadline,
    Verify,
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap pops the greatest, we want the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A replica's stable storage, as the runtime keeps it in its data directory.
pub(super) struct Disk {
    id: ReplicaId,
    genesis: View,
    durable: Durable,
}

/// The runtime's outbound peer links (runtime/peers.rs `Peers::update`), as a table of
/// where a message to each id goes. Keep the two in step: the simulator is only as
/// faithful as this copy.
#[derive(Debug, Default)]
struct PeerLinks {
    me: ReplicaId,
    links: BTreeMap<ReplicaId, String>,
    /// Removed members whose links are still open, oldest first.
    retired: VecDeque<ReplicaId>,
    view_number: u64,
}

/// Links to removed members kept open at most (as the runtime).
const MAX_RETIRED: usize = 16;

impl PeerLinks {
    fn new(me: ReplicaId, view: &View) -> PeerLinks {
        let mut links = PeerLinks {
            me,
            ..PeerLinks::default()
        };
        links.update(view);
        links
    }

    fn update(&mut self, view: &View) {
        if view.number < self.view_number {
            return;
        }
        self.view_number = view.number;
        let leaving: Vec<ReplicaId> = self
            .links
            .iter()
            .filter(|(id, addr)| view.addr_of(**id) != Some(addr.as_str()))
            .map(|(id, _)| *id)
            .collect();
        for id in leaving {
            if view.addr_of(id).is_some() {
                self.links.remove(&id);
            } else if !self.retired.contains(&id) {
                self.retired.push_back(id);
            }
        }
        while self.retired.len() > MAX_RETIRED {
            if let Some(old) = self.retired.pop_front() {
                self.links.remove(&old);
            }
        }
        for (id, addr) in view.everyone() {
            if id != self.me && !self.links.contains_key(&id) {
                self.links.insert(id, addr.to_string());
            }
        }
    }

    fn addr_of(&self, id: ReplicaId) -> Option<&str> {
        self.links.get(&id).map(String::as_str)
    }
}

pub(super) enum Proc {
    /// Not running (crashed, or never started).
    Off,
    /// Started without a disk: asking the group to be added.
    Joining {
        conn: ConnId,
        attempt: u64,
    },
    Up(Box<Node>),
    /// Stopped by a fatal error.
    Halted,
}

pub(super) struct Host {
    name: String,
    pub(super) addr: String,
    pub(super) proc: Proc,
    disk: Option<Disk>,
    /// Bumped on every start and stop, so stale timers of an earlier life do nothing.
    inc: u64,
    join_attempt: u64,
    /// The newest view this host has seen.
    routes: View,
    /// Where its messages go.
    links: PeerLinks,
    /// Peers whose messages reached this host, and where they are.
    heard: BTreeMap<ReplicaId, usize>,
    decided: u64,
    removed_at: Option<u64>,
    /// Crash while writing the next batch of records (power lost during the fsync).
    crash_in_write: bool,
}

impl Host {
    fn who(&self) -> String {
        match &self.proc {
            Proc::Up(n) => format!("{}#{}", self.name, n.id()),
            _ => self.name.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Client(usize),
    Admin,
    Joiner(usize),
}

/// A connection to a replica: who holds the other end, and when the last frame in each
/// direction arrives (frames on one connection keep their order, as on TCP).
pub(super) struct Conn {
    pub(super) host: usize,
    pub(super) end: End,
    up_at: u64,
    down_at: u64,
}

/// The network's character for this run, drawn from the configured maxima.
struct Net {
    loss: u64,
    duplicate: u64,
    max_delay: u64,
    client_break: u64,
}

struct AdminTask {
    change: MembershipChange,
    /// A spare host to start once the change (an add) is done.
    then_start: Option<usize>,
    target: usize,
    conn: Option<ConnId>,
    attempt: u64,
    tries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Forming,
    Running,
    Healing,
    Auditing,
    Verifying,
}

pub(super) struct World {
    seed: u64,
    pub(super) cfg: SimConfig,
    pub(super) rng: Rng,
    pub(super) now: u64,
    last_stamp: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    pub(super) hosts: Vec<Host>,
    pub(super) clients: Vec<SimClient>,
    pub(super) conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    /// Cut links (from, to) and when they heal.
    cuts: BTreeMap<(usize, usize), u64>,
    net: Net,
    admin: Option<AdminTask>,
    admin_attempts: u64,
    pub(super) phase: Phase,
    pub(super) history: History,
    pub(super) trace: Trace,
    pub(super) stats: Stats,
    /// Hash of the objects' state after each decided prefix, and who reported it first.
    slot_states: BTreeMap<u64, (u64, String)>,
    failure: Option<(FailureKind, String)>,
    done: bool,
    faults_end: u64,
    verify_deadline: u64,
    /// The final read of the counter.
    pub(super) final_counter: Option<CallId>,
    /// The replica seen leading last (for `Stats::leader_changes`).
    last_leader: Option<ReplicaId>,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

impl World {
    pub(super) fn new(seed: u64, cfg: SimConfig) -> World {
        let mut rng = Rng::new(seed);
        let replicas = match cfg.replicas {
            0 => *rng.pick(&[3, 5]).unwrap_or(&3),
            n => n,
        };
        let mut cfg = cfg;
        cfg.replicas = replicas;
        let f = &cfg.faults;
        let net = Net {
            loss: *rng.pick(&[0, f.loss / 2, f.loss, f.loss * 2]).unwrap_or(&0),
            duplicate: *rng.pick(&[0, f.duplicate, f.duplicate * 2]).unwrap_or(&0),
            max_delay: *rng
                .pick(&[f.max_delay_ms / 3, f.max_delay_ms, f.max_delay_ms * 2])
                .unwrap_or(&1)
                .max(&1),
            client_break: f.client_link_break,
        };
        let hosts = (0..replicas + cfg.spare_hosts)
            .map(|i| Host {
                name: format!("r{}", i + 1),
                addr: format!("r{}:7000", i + 1),
                proc: Proc::Off,
                disk: None,
                inc: 0,
                join_attempt: 0,
                routes: View::default(),
                links: PeerLinks::default(),
                heard: BTreeMap::new(),
                decided: 0,
                removed_at: None,
                crash_in_write: false,
            })
            .collect();
        let mut history = History::new();
        history.declare(COUNTER, ObjectSpec::Counter { value: 0, step: 1 });
        history.declare(TEN, ObjectSpec::Counter { value: 0, step: 10 });
        history.declare(DICT, ObjectSpec::Dict);
        history.declare(
            QUEUE,
            ObjectSpec::Queue {
                maxsize: QUEUE_MAXSIZE,
            },
        );
        history.declare(LOCK, ObjectSpec::Lock);
        history.declare(SEMAPHORE, ObjectSpec::Semaphore { count: PERMITS });
        World {
            seed,
            cfg,
            rng,
            now: 0,
            last_stamp: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            hosts,
            clients: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            cuts: BTreeMap::new(),
            net,
            admin: None,
            admin_attempts: 0,
            phase: Phase::Forming,
            history,
            trace: Trace::default(),
            stats: Stats::default(),
            slot_states: BTreeMap::new(),
            failure: None,
            done: false,
            faults_end: 0,
            verify_deadline: 0,
            final_counter: None,
            last_leader: None,
        }
    }

    // ----- the loop ---------------------------------------------------------------------

    pub(super) fn run(mut self) -> Result<Report, Box<Failure>> {
        self.start();
        while !self.done && self.failure.is_none() {
            let Some(s) = self.queue.pop() else {
                self.fail(
                    FailureKind::Harness,
                    "nothing left to happen before the run finished".into(),
                );
                break;
            };
            self.now = s.at;
            self.stats.events += 1;
            if self.stats.events > MAX_EVENTS {
                self.fail(
                    FailureKind::Harness,
                    format!("runaway run: more than {MAX_EVENTS} events"),
                );
                break;
            }
            let ev = s.ev;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.handle(ev))) {
                let text = panic_text(p.as_ref());
                self.fail(FailureKind::Crash, format!("panic: {text}"));
            }
        }
        if self.failure.is_none() {
            self.final_checks();
        }
        let history = std::mem::take(&mut self.history);
        match self.failure.take() {
            Some((kind, what)) => Err(Box::new(Failure {
                seed: self.seed,
                kind,
                what,
                trace: std::mem::take(&mut self.trace).text().to_string(),
                history,
            })),
            None => Ok(Report {
                seed: self.seed,
                trace: self.trace.text().to_string(),
                history,
                stats: self.stats,
            }),
        }
    }

    pub(super) fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
    }

    pub(super) fn after(&mut self, delay: u64, ev: Ev) {
        self.schedule(self.now + delay, ev);
    }

    /// A history timestamp: virtual microseconds, strictly increasing, so the order of
    /// events in the run is the real-time order the checker sees.
    pub(super) fn stamp(&mut self) -> u64 {
        self.last_stamp = (self.now * 1000).max(self.last_stamp + 1);
        self.last_stamp
    }

    pub(super) fn log(&mut self, who: &str, what: std::fmt::Arguments<'_>) {
        self.trace.line(self.now, who, what);
    }

    pub(super) fn fail(&mut self, kind: FailureKind, what: String) {
        if self.failure.is_none() {
            self.log("sim", format_args!("FAILURE ({kind:?}): {what}"));
            self.failure = Some((kind, what));
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick { host, inc } => {
                if self.hosts[host].inc == inc && self.node_call(host, |n, now| n.on_tick(now)) {
                    self.after(TICK_MS, Ev::Tick { host, inc });
                }
            }
            Ev::Peer {
                from,
                from_id,
                to,
                msg,
            } => self.deliver_peer(from, from_id, to, msg),
            Ev::ToReplica { conn, frame } => self.deliver_to_replica(conn, frame),
            Ev::ToEndpoint { conn, frame } => match self.conns.get(&conn).map(|c| c.end) {
                Some(End::Client(c)) => self.client_frame(c, conn, frame),
                Some(End::Admin) => self.admin_reply(conn, frame),
                _ => {}
            },
            Ev::Connected { conn, ok } => {
                if let Some(End::Client(c)) = self.conns.get(&conn).map(|c| c.end) {
                    if ok {
                        self.client_connected(c, conn);
                    } else {
                        self.conns.remove(&conn);
                        self.client_connect_failed(c, conn);
                    }
                }
            }
            Ev::LinkLost { conn } => self.link_lost(conn),
            Ev::Closed { host, conn } => {
                if let Proc::Up(n) = &mut self.hosts[host].proc {
                    n.on_closed(conn);
                }
            }
            Ev::Join { conn } => self.deliver_join(conn),
            Ev::JoinReply { conn, frame } => self.join_reply(conn, frame),
            Ev::JoinRetry {
                host,
                attempt,
                target,
            } => {
                if matches!(self.hosts[host].proc, Proc::Joining { attempt: a, .. } if a == attempt)
                {
                    self.join_attempt(host, target);
                }
            }
            Ev::ClientWake { client } => self.client_wake(client),
            Ev::AdminRetry { attempt, target } => {
                if self.admin.as_ref().is_some_and(|t| t.attempt == attempt) {
                    self.admin_send(target);
                }
            }
            Ev::Restart { host, inc } => {
                if self.hosts[host].inc == inc && matches!(self.hosts[host].proc, Proc::Off) {
                    self.restart(host);
                }
            }
            Ev::CheckFormed => self.check_formed(),
            Ev::Chaos => self.chaos(),
            Ev::EndFaults => self.end_faults(),
            Ev::StartAudit => self.start_audit(),
            Ev::AuditDeadline => {
                if self.phase == Phase::Auditing {
                    let status = self.status_lines();
                    self.fail(FailureKind::Liveness, format!(
                        "liveness: the final reads did not complete within {} s after the faults ended\n{status}",
                        AUDIT_DEADLINE_MS / 1000
                    ));
                }
            }
            Ev::Verify => self.verify(),
        }
    }

    // ----- replicas -------------------------------------------------------------------

    fn start(&mut self) {
        let line = format!(
            "seed {} with {} replicas (+{} spare), {} clients; network: loss {}‰, duplicates {}‰, delay up to {} ms",
            self.seed,
            self.cfg.replicas,
            self.cfg.spare_hosts,
            self.cfg.clients,
            self.net.loss,
            self.net.duplicate,
            self.net.max_delay
        );
        self.log("sim", format_args!("{line}"));
        let first = vec![
            ensure(COUNTER, "Counter", vec![]),
            ensure(DICT, "Dict", vec![]),
            ensure(QUEUE, "Queue", vec![Value::from(QUEUE_MAXSIZE)]),
            ensure(LOCK, "Lock", vec![]),
            ensure(SEMAPHORE, "Semaphore", vec![Value::from(PERMITS)]),
            Command::EnsureType {
                module: "tencounter".into(),
                class: "TenCounter".into(),
                source: TEN_COUNTER_SOURCE.into(),
            },
            ensure(TEN, "tencounter.TenCounter", vec![]),
        ];
        let addr = self.hosts[0].addr.clone();
        let seed = self.rng.next_u64();
        let (node, actions) = Node::found(
            &addr,
            self.cfg.node.clone(),
            StateMachine::default(),
            first,
            seed,
            self.now,
        );
        let h = &mut self.hosts[0];
        h.disk = Some(Disk {
            id: node.id(),
            genesis: View::founded_by(&addr),
            durable: Durable::default(),
        });
        h.routes = node.view().clone();
        h.links = PeerLinks::new(node.id(), node.view());
        h.inc += 1;
        h.proc = Proc::Up(Box::new(node));
        let inc = h.inc;
        let who = h.who();
        self.log(&who, format_args!("founds the group"));
        self.perform(0, actions);
        self.after(TICK_MS, Ev::Tick { host: 0, inc });
        for host in 1..self.cfg.replicas {
            let d = self.rng.range(1, 50);
            self.after(d, Ev::Restart { host, inc: 0 });
        }
        self.after(50, Ev::CheckFormed);
    }

    /// Calls the node on `host`, if it runs, and performs what it asks. False when the
    /// host does not run a node.
    fn node_call(&mut self, h: usize, f: impl FnOnce(&mut Node, u64) -> Vec<Action>) -> bool {
        let now = self.now;
        let Proc::Up(node) = &mut self.hosts[h].proc else {
            return false;
        };
        let actions = f(node, now);
        self.perform(h, actions);
        // Every input is a burst of its own: the user-object calls it decided run now,
        // after its messages left (as the runtime does at the end of a burst).
        if let Proc::Up(node) = &mut self.hosts[h].proc {
            let actions = node.run_put_off_calls();
            self.perform(h, actions);
        }
        self.after_call(h);
        true
    }

    /// Performs a batch of actions: its records and snapshots reach the disk before any
    /// of its messages or replies leave.
    fn perform(&mut self, h: usize, actions: Vec<Action>) {
        let writes = actions
            .iter()
            .filter(|a| matches!(a, Action::Persist(_) | Action::SaveSnapshot(..)))
            .count();
        if writes > 0 && self.hosts[h].crash_in_write {
            self.crash_in_write(h, actions, writes);
            return;
        }
        let mut rest = Vec::new();
        let mut replies = Vec::new();
        for a in actions {
            match a {
                Action::Persist(r) => {
                    if let Some(d) = &mut self.hosts[h].disk {
                        d.durable.records.push(r);
                    }
                }
                Action::SaveSnapshot(snapshot, records) => {
                    let who = self.hosts[h].who();
                    self.log(
                        &who,
                        format_args!("saves a snapshot at slot {}", snapshot.slot),
                    );
                    if self.cfg.compare_replicas {
                        self.note_state(h, snapshot.slot, &snapshot.state);
                    }
                    if let Some(d) = &mut self.hosts[h].disk {
                        d.durable.snapshot = Some(snapshot);
                        d.durable.records = records;
                    }
                }
                Action::Reply { .. } | Action::JoinReply { .. } => replies.push(a),
                other => rest.push(other),
            }
        }
        // The node keeps waiting calls in a HashMap, so replies it fails together come in
        // no fixed order: put them in one, or a seed would not name one run.
        replies.sort_by_key(|a| match a {
            Action::Reply {
                conn,
                frame: ReplicaFrame::Reply { session, seq, .. },
            } => (*conn, *session, *seq),
            Action::Reply { conn, .. } | Action::JoinReply { conn, .. } => (*conn, 0, 0),
            _ => (0, 0, 0),
        });
        for a in rest.into_iter().chain(replies) {
            self.dispatch(h, a);
        }
    }

    /// Power fails while the batch is written: some first records reach the disk, the
    /// rest and every message and reply of the batch are lost.
    fn crash_in_write(&mut self, h: usize, actions: Vec<Action>, writes: usize) {
        let kept = self.rng.below(writes as u64 + 1) as usize;
        let mut written = 0;
        for a in actions {
            if written == kept {
                break;
            }
            let Some(d) = &mut self.hosts[h].disk else {
                break;
            };
            match a {
                Action::Persist(r) => d.durable.records.push(r),
                Action::SaveSnapshot(snapshot, records) => {
                    d.durable.snapshot = Some(snapshot);
                    d.durable.records = records;
                }
                _ => continue,
            }
            written += 1;
        }
        let who = self.hosts[h].who();
        self.log(
            &who,
            format_args!("power fails while writing: {kept} of {writes} writes reach the disk"),
        );
        self.hosts[h].crash_in_write = false;
        self.crash(h, false);
        let d = self.rng.range(50, 2_000);
        let inc = self.hosts[h].inc;
        self.after(d, Ev::Restart { host: h, inc });
    }

    fn dispatch(&mut self, h: usize, a: Action) {
        match a {
            Action::Send { to, msg } => self.send_peer(h, to, msg),
            Action::Reply { conn, frame } => self.send_to_endpoint(conn, frame),
            Action::JoinReply { conn, frame } => {
                if self.conns.contains_key(&conn) {
                    let d = self.delay();
                    self.after(d, Ev::JoinReply { conn, frame });
                }
            }
            Action::ViewChanged(view) => {
                self.hosts[h].links.update(&view);
                if view.number > self.hosts[h].routes.number {
                    let who = self.hosts[h].who();
                    self.log(&who, format_args!("view {}", show_view(&view)));
                    self.hosts[h].routes = view;
                }
            }
            Action::Removed => {
                let who = self.hosts[h].who();
                self.log(
                    &who,
                    format_args!("was removed from the view; stops serving"),
                );
                self.hosts[h].removed_at = Some(self.now);
            }
            Action::Fatal(reason) => {
                let who = self.hosts[h].who();
                self.log(&who, format_args!("FATAL: {reason}"));
                self.hosts[h].proc = Proc::Halted;
                self.fail(
                    FailureKind::Crash,
                    format!("{who} stopped with a fatal error: {reason}"),
                );
            }
            Action::Persist(_) | Action::SaveSnapshot(..) => {}
        }
    }

    /// After every node call: if its decided prefix moved, compare its state there with
    /// what other replicas had at the same prefix.
    fn after_call(&mut self, h: usize) {
        let Proc::Up(node) = &self.hosts[h].proc else {
            return;
        };
        if node.is_leader() && self.last_leader != Some(node.id()) {
            if self.last_leader.is_some() && self.phase == Phase::Running {
                self.stats.leader_changes += 1;
            }
            self.last_leader = Some(node.id());
        }
        let decided = node.paxos().decided_upto();
        if decided == self.hosts[h].decided {
            return;
        }
        let check = self.cfg.check_every_slot && self.cfg.compare_replicas;
        let saved = check.then(|| node.state().save());
        self.hosts[h].decided = decided;
        match saved {
            None => {}
            Some(Ok(bytes)) => self.note_state(h, decided, &bytes),
            Some(Err(e)) => {
                let name = self.hosts[h].name.clone();
                self.fail(
                    FailureKind::Crash,
                    format!("cannot save the state of {name}: {e}"),
                );
            }
        }
    }

    fn note_state(&mut self, h: usize, slot: u64, bytes: &[u8]) {
        let hash = fnv(bytes);
        let who = self.hosts[h].who();
        match self.slot_states.get(&slot) {
            Some((first, first_who)) if *first != hash => {
                let first_who = first_who.clone();
                self.fail(FailureKind::Disagreement, format!(
                    "replicas disagree: {who} and {first_who} hold different objects after executing the {slot} slots below {slot}"
                ));
            }
            Some(_) => {}
            None => {
                self.slot_states.insert(slot, (hash, who));
            }
        }
    }

    pub(super) fn delay(&mut self) -> u64 {
        let max = self.net.max_delay;
        // A few messages are much later than the rest: that is what reorders them.
        if self.rng.chance(20) {
            self.rng.range(max, 5 * max)
        } else {
            self.rng.range(1, max)
        }
    }

    fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cuts
            .get(&(from, to))
            .is_some_and(|until| self.now < *until)
    }

    pub(super) fn host_of(&self, addr: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.addr == addr)
    }

    fn send_peer(&mut self, from: usize, to_id: ReplicaId, msg: Message) {
        let Proc::Up(node) = &self.hosts[from].proc else {
            return;
        };
        let from_id = node.id();
        // As the runtime's peer links (and, if the runtime did so, a peer that connected
        // to us could be answered).
        let Some(to) = self.hosts[from]
            .links
            .addr_of(to_id)
            .and_then(|a| self.host_of(a))
            .or_else(|| {
                let host = &self.hosts[from];
                let known = self.cfg.answer_unknown_peers;
                known.then(|| host.heard.get(&to_id).copied()).flatten()
            })
        else {
            return;
        };
        self.stats.messages += 1;
        if self.is_cut(from, to) {
            return;
        }
        if self.rng.chance(self.net.loss) {
            let who = self.hosts[from].who();
            let name = self.hosts[to].name.clone();
            self.log(&who, format_args!("-x {name}: {} (lost)", M(&msg)));
            return;
        }
        if self.rng.chance(self.net.duplicate) {
            let d = self.delay();
            self.after(
                d,
                Ev::Peer {
                    from,
                    from_id,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        let d = self.delay();
        self.after(
            d,
            Ev::Peer {
                from,
                from_id,
                to,
                msg,
            },
        );
    }

    fn deliver_peer(&mut self, from: usize, from_id: ReplicaId, to: usize, msg: Message) {
        if self.is_cut(from, to) || !matches!(self.hosts[to].proc, Proc::Up(_)) {
            return;
        }
        self.hosts[to].heard.insert(from_id, from);
        let who = self.hosts[to].who();
        let name = &self.hosts[from].name;
        self.trace.line(
            self.now,
            &who,
            format_args!("<- {name}#{from_id} {}", M(&msg)),
        );
        self.node_call(to, |n, now| n.on_peer(now, from_id, msg));
    }

    fn crash(&mut self, h: usize, lose_disk: bool) {
        let who = self.hosts[h].who();
        self.log(
            &who,
            format_args!("CRASH{}", if lose_disk { ", its disk is lost" } else { "" }),
        );
        let host = &mut self.hosts[h];
        host.proc = Proc::Off;
        host.inc += 1;
        host.decided = 0;
        host.removed_at = None;
        host.heard.clear();
        host.crash_in_write = false;
        if lose_disk {
            host.disk = None;
            self.stats.disk_losses += 1;
        } else {
            self.stats.crashes += 1;
        }
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.host == h)
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            // A reset reaches some clients at once; others notice by silence.
            if self.rng.chance(500) {
                self.break_conn(conn);
            } else {
                self.conns.remove(&conn);
            }
        }
    }

    /// Starts a stopped host: from its disk if it has one, else as a joiner.
    fn restart(&mut self, h: usize) {
        let Some(disk) = &self.hosts[h].disk else {
            self.start_join(h);
            return;
        };
        let seed = self.rng.next_u64();
        let host = &self.hosts[h];
        let result = Node::recover(
            &host.addr,
            disk.id,
            disk.genesis.clone(),
            self.cfg.node.clone(),
            StateMachine::default(),
            &disk.durable,
            seed,
            self.now,
        );
        let (snap, records) = (
            disk.durable.snapshot.as_ref().map_or(0, |s| s.slot),
            disk.durable.records.len(),
        );
        match result {
            Ok(node) => {
                let host = &mut self.hosts[h];
                host.routes = node.view().clone();
                host.links = PeerLinks::new(node.id(), node.view());
                host.decided = 0;
                host.inc += 1;
                let (inc, view) = (host.inc, show_view(node.view()));
                let decided = node.paxos().decided_upto();
                host.proc = Proc::Up(Box::new(node));
                let who = self.hosts[h].who();
                self.log(
                    &who,
                    format_args!(
                        "restarts from its disk (snapshot at slot {snap}, {records} records): decided up to {decided}, view {view}"
                    ),
                );
                self.after_call(h);
                self.after(TICK_MS, Ev::Tick { host: h, inc });
            }
            Err(e) => {
                let name = self.hosts[h].name.clone();
                self.fail(
                    FailureKind::Crash,
                    format!("{name} cannot recover from its disk: {e}"),
                );
            }
        }
    }

    fn start_join(&mut self, h: usize) {
        self.hosts[h].inc += 1;
        let who = self.hosts[h].who();
        self.log(
            &who,
            format_args!("starts with an empty disk and asks to join"),
        );
        self.join_attempt(h, None);
    }

    /// Asks `target` (or a host picked at random) to add this host.
    fn join_attempt(&mut self, h: usize, target: Option<usize>) {
        if let Proc::Joining { conn, .. } = self.hosts[h].proc {
            self.close_conn(conn);
        }
        let others: Vec<usize> = (0..self.hosts.len()).filter(|i| *i != h).collect();
        let target = target
            .or_else(|| self.rng.pick(&others).copied())
            .unwrap_or(0);
        let conn = self.open_conn(target, End::Joiner(h));
        let host = &mut self.hosts[h];
        host.join_attempt += 1;
        let attempt = host.join_attempt;
        host.proc = Proc::Joining { conn, attempt };
        let d = self.delay();
        self.after(d, Ev::Join { conn });
        self.after(
            JOIN_TIMEOUT_MS,
            Ev::JoinRetry {
                host: h,
                attempt,
                target: None,
            },
        );
    }

    fn deliver_join(&mut self, conn: ConnId) {
        let Some(&Conn {
            host: target,
            end: End::Joiner(h),
            ..
        }) = self.conns.get(&conn)
        else {
            return;
        };
        if !matches!(self.hosts[target].proc, Proc::Up(_)) {
            // Nobody listens there: the joiner tries elsewhere soon.
            self.conns.remove(&conn);
            if let Proc::Joining { attempt, .. } = self.hosts[h].proc {
                let d = self.rng.range(20, 200);
                self.after(
                    d,
                    Ev::JoinRetry {
                        host: h,
                        attempt,
                        target: None,
                    },
                );
            }
            return;
        }
        let addr = self.hosts[h].addr.clone();
        let who = self.hosts[target].who();
        let name = self.hosts[h].name.clone();
        self.log(&who, format_args!("<- {name} asks to join"));
        self.node_call(target, |n, now| n.on_join(now, conn, addr));
    }

    fn join_reply(&mut self, conn: ConnId, frame: PeerFrame) {
        let Some(End::Joiner(h)) = self.conns.get(&conn).map(|c| c.end) else {
            return;
        };
        let Proc::Joining {
            conn: current,
            attempt,
        } = self.hosts[h].proc
        else {
            return;
        };
        if current != conn {
            return;
        }
        let who = self.hosts[h].who();
        self.log(&who, format_args!("<- {}", trace::peer_frame(&frame)));
        self.close_conn(conn);
        match frame {
            PeerFrame::Joined { id, view, genesis } => {
                let seed = self.rng.next_u64();
                let host = &mut self.hosts[h];
                let node = Node::joined(
                    &host.addr,
                    id,
                    genesis.clone(),
                    self.cfg.node.clone(),
                    StateMachine::default(),
                    seed,
                    self.now,
                );
                host.disk = Some(Disk {
                    id,
                    genesis,
                    durable: Durable::default(),
                });
                host.links = PeerLinks::new(id, &view);
                host.routes = view;
                host.decided = 0;
                host.removed_at = None;
                host.inc += 1;
                host.proc = Proc::Up(Box::new(node));
                let inc = host.inc;
                self.after(TICK_MS, Ev::Tick { host: h, inc });
            }
            PeerFrame::JoinRedirect { leader } => {
                let target = leader.and_then(|a| self.host_of(&a)).filter(|t| *t != h);
                let d = match target {
                    Some(_) => self.rng.range(1, 20),
                    None => self.rng.range(100, 300),
                };
                self.after(
                    d,
                    Ev::JoinRetry {
                        host: h,
                        attempt,
                        target,
                    },
                );
            }
            _ => {
                let d = self.rng.range(100, 300);
                self.after(
                    d,
                    Ev::JoinRetry {
                        host: h,
                        attempt,
                        target: None,
                    },
                );
            }
        }
    }

    // ----- connections ----------------------------------------------------------------

    pub(super) fn open_conn(&mut self, host: usize, end: End) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                host,
                end,
                up_at: 0,
                down_at: 0,
            },
        );
        id
    }

    /// The end that opened `conn` drops it; the replica learns a little later.
    pub(super) fn close_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            let d = self.rng.range(1, 5);
            self.after(d, Ev::Closed { host: c.host, conn });
        }
    }

    /// The connection fails under both ends.
    pub(super) fn break_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            let host = c.host;
            let d = self.rng.range(1, 5);
            self.after(d, Ev::Closed { host, conn });
            let d = self.rng.range(1, 5);
            self.after(d, Ev::LinkLost { conn });
        }
    }

    fn link_lost(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.end {
            End::Client(client) => self.client_link_lost(client, conn),
            End::Admin => {
                if let Some(t) = &self.admin
                    && t.conn == Some(conn)
                {
                    let attempt = t.attempt;
                    self.after(
                        100,
                        Ev::AdminRetry {
                            attempt,
                            target: None,
                        },
                    );
                }
            }
            End::Joiner(_) => {}
        }
    }

    /// A client or the administrator opens a connection; it works if the host listens.
    pub(super) fn connect(&mut self, host: usize, end: End, reachable: bool) -> ConnId {
        let conn = self.open_conn(host, end);
        let listening = matches!(self.hosts[host].proc, Proc::Up(_) | Proc::Halted);
        let ok = reachable && listening;
        let d = if ok {
            self.rng.range(1, 3)
        } else {
            self.rng.range(1, 100)
        };
        self.after(d, Ev::Connected { conn, ok });
        conn
    }

    /// A frame from a client (or the administrator) to its replica.
    pub(super) fn send_to_replica(&mut self, conn: ConnId, frame: ClientFrame) {
        if let Some(at) = self.transit(conn, true) {
            self.schedule(at, Ev::ToReplica { conn, frame });
        }
    }

    fn send_to_endpoint(&mut self, conn: ConnId, frame: ReplicaFrame) {
        if let Some(at) = self.transit(conn, false) {
            self.schedule(at, Ev::ToEndpoint { conn, frame });
        }
    }

    /// When a frame sent now on `conn` arrives, in order with the earlier frames going the
    /// same way (`upward`: towards the replica), or None when the connection breaks instead.
    fn transit(&mut self, conn: ConnId, upward: bool) -> Option<u64> {
        let c = self.conns.get(&conn)?;
        if let End::Client(client) = c.end
            && (self.clients[client].isolated(self.now) || self.rng.chance(self.net.client_break))
        {
            self.break_conn(conn);
            return None;
        }
        let d = self.delay();
        let now = self.now;
        let c = self.conns.get_mut(&conn)?;
        let mark = if upward { &mut c.up_at } else { &mut c.down_at };
        let at = (now + d).max(*mark);
        *mark = at;
        Some(at)
    }

    fn deliver_to_replica(&mut self, conn: ConnId, frame: ClientFrame) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (h, end) = (c.host, c.end);
        match &self.hosts[h].proc {
            Proc::Up(_) => {}
            Proc::Halted => {
                self.break_conn(conn);
                return;
            }
            Proc::Off | Proc::Joining { .. } => {
                self.break_conn(conn);
                return;
            }
        }
        let who = self.hosts[h].who();
        let from = match end {
            End::Client(c) => self.clients[c].name.clone(),
            End::Admin => "admin".into(),
            End::Joiner(j) => self.hosts[j].name.clone(),
        };
        if !matches!(frame, ClientFrame::Status) {
            self.log(
                &who,
                format_args!("<- {from} {}", trace::client_frame(&frame)),
            );
        }
        match frame {
            ClientFrame::Request(cmd) => {
                self.node_call(h, |n, now| n.on_request(now, conn, cmd));
            }
            ClientFrame::KeepAlive { session } => {
                self.node_call(h, |n, now| n.on_keepalive(now, conn, session));
            }
            ClientFrame::Status => {
                if let Proc::Up(n) = &self.hosts[h].proc {
                    let frame = ReplicaFrame::Status(n.status());
                    self.send_to_endpoint(conn, frame);
                }
            }
            ClientFrame::Membership(change) => {
                self.node_call(h, |n, now| n.on_membership(now, conn, change));
            }
            ClientFrame::Fault(_) => {
                // The simulator cuts links itself; replicas here take no such orders.
                let frame = ReplicaFrame::Faults(Err("not in the simulator".into()));
                self.send_to_endpoint(conn, frame);
            }
        }
    }

    // ----- phases -----------------------------------------------------------------------

    /// The newest view any running replica knows.
    pub(super) fn current_view(&self) -> View {
        self.hosts
            .iter()
            .filter(|h| matches!(h.proc, Proc::Up(_)))
            .map(|h| &h.routes)
            .max_by_key(|v| v.number)
            .cloned()
            .unwrap_or_default()
    }

    fn leader_host(&self) -> Option<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match &h.proc {
                Proc::Up(n) if n.is_leader() => Some((n.paxos().ballot(), i)),
                _ => None,
            })
            .max()
            .map(|(_, i)| i)
    }

    fn check_formed(&mut self) {
        let view = self.current_view();
        if view.members.len() >= self.cfg.replicas {
            self.phase = Phase::Running;
            self.faults_end = self.now + self.cfg.fault_ms;
            self.log(
                "sim",
                format_args!("the group formed: view {}", show_view(&view)),
            );
            let initial: Vec<usize> = (0..self.cfg.replicas).collect();
            for i in 0..self.cfg.clients {
                let c = SimClient::new(
                    i as i64 + 1,
                    format!("c{}", i + 1),
                    initial.clone(),
                    &mut self.rng,
                );
                self.clients.push(c);
                let d = self.rng.range(0, CLIENT_WAKE_MS);
                self.after(d, Ev::ClientWake { client: i });
            }
            let (lo, hi) = self.cfg.faults.every_ms;
            let d = self.rng.range(lo, hi);
            self.after(d, Ev::Chaos);
            self.schedule(self.faults_end, Ev::EndFaults);
            return;
        }
        if self.now > FORM_DEADLINE_MS {
            let status = self.status_lines();
            self.fail(
                FailureKind::Liveness,
                format!(
                    "liveness: the group did not form {} members within {} s\n{status}",
                    self.cfg.replicas,
                    FORM_DEADLINE_MS / 1000
                ),
            );
            return;
        }
        self.after(50, Ev::CheckFormed);
    }

    fn end_faults(&mut self) {
        self.phase = Phase::Healing;
        self.cuts.clear();
        self.log(
            "sim",
            format_args!("faults end: links heal, stopped replicas restart, clients stop calling"),
        );
        for c in &mut self.clients {
            c.stopped = true;
            c.isolated_until = 0;
        }
        for h in &mut self.hosts {
            h.crash_in_write = false;
        }
        let view = self.current_view();
        for h in 0..self.hosts.len() {
            if !matches!(self.hosts[h].proc, Proc::Off) {
                continue;
            }
            let member = view.id_of(&self.hosts[h].addr).is_some();
            if self.hosts[h].disk.is_some() || member {
                self.restart(h);
            }
        }
        self.after(QUIET_MS, Ev::StartAudit);
    }

    fn start_audit(&mut self) {
        self.phase = Phase::Auditing;
        let hosts: Vec<usize> = (0..self.hosts.len()).collect();
        let mut c = SimClient::new(0, "audit".into(), hosts, &mut self.rng);
        c.audit = Some(Audit::new());
        self.clients.push(c);
        let i = self.clients.len() - 1;
        self.log("sim", format_args!("final reads through a new client"));
        self.after(0, Ev::ClientWake { client: i });
        self.after(AUDIT_DEADLINE_MS, Ev::AuditDeadline);
    }

    /// The auditor read everything: now the replicas must converge and agree.
    pub(super) fn audit_done(&mut self) {
        self.phase = Phase::Verifying;
        self.verify_deadline = self.now + CONVERGE_MS;
        self.after(10, Ev::Verify);
    }

    fn verify(&mut self) {
        if !self.cfg.compare_replicas {
            self.done = true;
            return;
        }
        let view = self.current_view();
        let mut lagging = Vec::new();
        let mut states: Vec<(String, u64, Vec<u8>)> = Vec::new();
        for (id, addr) in view.everyone() {
            let host = self.host_of(addr).map(|h| &self.hosts[h]);
            match host.map(|h| (h, &h.proc)) {
                Some((h, Proc::Up(n))) if n.id() == id => match n.state().save() {
                    Ok(bytes) => states.push((h.who(), n.paxos().decided_upto(), bytes)),
                    Err(e) => lagging.push(format!("{addr}: cannot save its state: {e}")),
                },
                _ => lagging.push(format!("replica {id} at {addr} is not running")),
            }
        }
        let top = states.iter().map(|s| s.1).max().unwrap_or(0);
        for (who, decided, _) in &states {
            if *decided < top {
                lagging.push(format!("{who} decided up to {decided}, not {top}"));
            }
        }
        if !lagging.is_empty() {
            if self.now < self.verify_deadline {
                self.after(100, Ev::Verify);
                return;
            }
            let status = self.status_lines();
            self.fail(FailureKind::Liveness, format!(
                "liveness: {} s after the final reads the replicas have not converged: {}\n{status}",
                CONVERGE_MS / 1000,
                lagging.join("; ")
            ));
            return;
        }
        if let Some((first, _, bytes)) = states.first() {
            for (who, _, other) in &states[1..] {
                if other != bytes {
                    let what = format!(
                        "replicas disagree after healing: {who} and {first} both executed {top} slots but hold different objects"
                    );
                    self.fail(FailureKind::Disagreement, what);
                    return;
                }
            }
        }
        self.stats.final_slot = top;
        self.log(
            "sim",
            format_args!(
                "the {} replicas agree on the objects after {top} slots",
                states.len()
            ),
        );
        self.done = true;
    }

    /// Linearizability of the whole history, and the counter's acknowledged updates.
    fn final_checks(&mut self) {
        self.stats.calls = self.history.len() as u64;
        self.stats.returned = self
            .history
            .entries()
            .iter()
            .filter(|e| e.ret.is_some())
            .count() as u64;
        let lost = self.lost_increments();
        match (linearizability::check(&self.history), lost) {
            (Err(v), lost) => {
                let also = lost.map(|l| format!("\nAlso: {l}")).unwrap_or_default();
                self.fail(
                    FailureKind::NotLinearizable,
                    format!("the history is not linearizable: {v}{also}"),
                );
            }
            // The checker should have seen this too: say so loudly.
            (Ok(()), Some(lost)) => self.fail(
                FailureKind::LostUpdate,
                format!("{lost} (and the linearizability checker missed it)"),
            ),
            (Ok(()), None) => {}
        }
    }

    /// The final read of the counter against the increments and decrements clients saw
    /// acknowledged before it started (and those that may or may not have counted: never
    /// answered, or answered while it ran).
    fn lost_increments(&self) -> Option<String> {
        let read = self.history.entries().get(self.final_counter?.0)?;
        let Some((read_end, Outcome::Ok(Val::Int(value)))) = &read.ret else {
            return None;
        };
        let (read, read_start, read_end) = (*value, read.invoke, *read_end);
        let (mut inc, mut dec, mut maybe_inc, mut maybe_dec) = (0i64, 0i64, 0i64, 0i64);
        for e in self.history.entries() {
            let delta = match e.op.call {
                Call::Counter(CounterCall::Increment) => 1,
                Call::Counter(CounterCall::Decrement) => -1,
                _ => continue,
            };
            if e.op.object != COUNTER || e.invoke > read_end {
                continue;
            }
            let done_before = match &e.ret {
                Some((t, Outcome::Ok(Val::Nil))) => *t < read_start,
                Some(_) => continue, // failed: no effect
                None => false,
            };
            match (delta, done_before) {
                (1, true) => inc += 1,
                (1, false) => maybe_inc += 1,
                (_, true) => dec += 1,
                (_, false) => maybe_dec += 1,
            }
        }
        let (low, high) = (inc - dec - maybe_dec, inc + maybe_inc - dec);
        (read < low || read > high).then(|| {
            format!(
                "acknowledged updates were lost: after healing the counter reads {read}, but {inc} increments and {dec} decrements were acknowledged before that read ({maybe_inc} and {maybe_dec} more may or may not count), so it must be within {low}..={high}"
            )
        })
    }

    /// One line per host, for liveness failures.
    fn status_lines(&self) -> String {
        let mut out = String::new();
        for h in &self.hosts {
            let line = match &h.proc {
                Proc::Off => format!("  {}: not running", h.name),
                Proc::Halted => format!("  {}: halted", h.name),
                Proc::Joining { .. } => format!("  {}: joining", h.name),
                Proc::Up(n) => {
                    let s = n.status();
                    format!(
                        "  {}: decided {} leader {:?} ballot {}.{} view {}",
                        h.who(),
                        s.decided_upto,
                        s.leader,
                        s.ballot.0,
                        s.ballot.1,
                        show_view(n.view())
                    )
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    // ----- faults -----------------------------------------------------------------------

    fn chaos(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.decommission_removed();
        let f = self.cfg.faults.clone();
        let mut options: Vec<(u64, Fault)> = Vec::new();
        if f.crashes {
            options.push((4, Fault::Crash));
        }
        if f.disk_loss {
            options.push((1, Fault::Wipe));
        }
        if f.partitions {
            options.extend([
                (2, Fault::Partition),
                (2, Fault::OneWay),
                (2, Fault::IsolateLeader),
                (2, Fault::Heal),
            ]);
        }
        if f.membership {
            options.extend([(2, Fault::Add), (2, Fault::Remove)]);
        }
        if f.client_isolation {
            options.push((2, Fault::IsolateClient));
        }
        if f.follower_disruptions {
            options.extend([(2, Fault::RestartFollower), (2, Fault::IsolateFollower)]);
        }
        let total: u64 = options.iter().map(|o| o.0).sum();
        let mut roll = self.rng.below(total);
        let mut chosen = None;
        for (w, fault) in options {
            if roll < w {
                chosen = Some(fault);
                break;
            }
            roll -= w;
        }
        if let Some(fault) = chosen {
            self.strike(fault);
        }
        let (lo, hi) = f.every_ms;
        let d = self.rng.range(lo, hi);
        self.after(d, Ev::Chaos);
    }

    /// Voting members that are not running as themselves right now.
    fn down_voters(&self, view: &View) -> usize {
        view.members
            .iter()
            .filter(|(id, addr)| {
                !self
                    .host_of(addr)
                    .is_some_and(|h| matches!(&self.hosts[h].proc, Proc::Up(n) if n.id() == **id))
            })
            .count()
    }

    /// Crashes host `h` (keeping its disk) and restarts it within 3 s.
    fn crash_then_restart(&mut self, h: usize) {
        self.crash(h, false);
        let d = self.rng.range(50, 3_000);
        let inc = self.hosts[h].inc;
        self.after(d, Ev::Restart { host: h, inc });
    }

    /// Cuts host `h` (the `role` it plays) off from everyone, both ways, for up to 3 s.
    fn isolate(&mut self, h: usize, role: &str) {
        let until = self.now + self.rng.range(300, 3_000);
        for other in 0..self.hosts.len() {
            if other != h {
                self.cuts.insert((h, other), until);
                self.cuts.insert((other, h), until);
            }
        }
        self.stats.partitions += 1;
        let who = self.hosts[h].who();
        self.log(
            "sim",
            format_args!("ISOLATE the {role} {who} for {} ms", until - self.now),
        );
    }

    fn strike(&mut self, fault: Fault) {
        let view = self.current_view();
        let voters = view.members.len();
        // Crash no more than a minority (counting those already down), so the group
        // keeps a quorum once the links heal.
        let may_crash = self.down_voters(&view) < voters.saturating_sub(1) / 2;
        let up: Vec<usize> = (0..self.hosts.len())
            .filter(|h| matches!(self.hosts[*h].proc, Proc::Up(_)))
            .collect();
        match fault {
            Fault::Crash => {
                if !may_crash {
                    return;
                }
                let target = match self.leader_host() {
                    Some(l) if self.rng.chance(400) => Some(l),
                    _ => self.rng.pick(&up).copied(),
                };
                if let Some(h) = target {
                    if self.rng.chance(300) {
                        // It goes down with its next write instead.
                        self.hosts[h].crash_in_write = true;
                        return;
                    }
                    self.crash_then_restart(h);
                }
            }
            Fault::Wipe => {
                // A lost disk is a permanent loss of that member, until its replacement
                // is added and every member knows it. So: one at a time, none while any
                // is down, and only once every member has executed the newest view
                // (else two lost disks could fall in one view, more than it tolerates).
                let joining = self
                    .hosts
                    .iter()
                    .any(|h| matches!(h.proc, Proc::Joining { .. }));
                let settled = self.hosts.iter().all(|h| match &h.proc {
                    Proc::Up(n) => !view.knows(n.id()) || n.view().number == view.number,
                    _ => true,
                });
                if !may_crash || joining || !settled || self.down_voters(&view) > 0 {
                    return;
                }
                let members: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|h| view.id_of(&self.hosts[*h].addr).is_some())
                    .collect();
                if let Some(&h) = self.rng.pick(&members) {
                    self.crash(h, true);
                    let d = self.rng.range(50, 2_000);
                    let inc = self.hosts[h].inc;
                    self.after(d, Ev::Restart { host: h, inc });
                }
            }
            Fault::Partition => {
                let n = self.hosts.len();
                let size = self.rng.range(1, (n / 2).max(1) as u64) as usize;
                let mut side: Vec<usize> = Vec::new();
                while side.len() < size {
                    let h = self.rng.below(n as u64) as usize;
                    if !side.contains(&h) {
                        side.push(h);
                    }
                }
                side.sort_unstable();
                let until = self.now + self.rng.range(200, 3_000);
                for a in 0..n {
                    for b in 0..n {
                        if side.contains(&a) != side.contains(&b) {
                            self.cuts.insert((a, b), until);
                        }
                    }
                }
                self.stats.partitions += 1;
                let names: Vec<&str> = side.iter().map(|h| self.hosts[*h].name.as_str()).collect();
                let names = names.join(" ");
                self.log(
                    "sim",
                    format_args!(
                        "PARTITION {{{names}}} from the rest for {} ms",
                        until - self.now
                    ),
                );
            }
            Fault::OneWay => {
                let n = self.hosts.len() as u64;
                let a = self.rng.below(n) as usize;
                let b = self.rng.below(n) as usize;
                if a == b {
                    return;
                }
                let until = self.now + self.rng.range(200, 3_000);
                self.cuts.insert((a, b), until);
                self.stats.partitions += 1;
                let (x, y) = (self.hosts[a].name.clone(), self.hosts[b].name.clone());
                self.log(
                    "sim",
                    format_args!("CUT {x} -> {y} (one way) for {} ms", until - self.now),
                );
            }
            Fault::IsolateLeader => {
                let Some(l) = self.leader_host() else {
                    return;
                };
                self.isolate(l, "leader");
            }
            Fault::RestartFollower | Fault::IsolateFollower => {
                // One follower at a time, so the leader keeps its majority throughout: the
                // point is that such a leader is never deposed.
                let now = self.now;
                let cut_off = self.cuts.values().any(|until| *until > now);
                if self.down_voters(&view) > 0 || cut_off {
                    return;
                }
                let leader = self.leader_host();
                let followers: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|h| Some(*h) != leader && view.id_of(&self.hosts[*h].addr).is_some())
                    .collect();
                let Some(&h) = self.rng.pick(&followers) else {
                    return;
                };
                if matches!(fault, Fault::IsolateFollower) {
                    self.isolate(h, "follower");
                } else if may_crash {
                    self.crash_then_restart(h);
                }
            }
            Fault::Heal => {
                if !self.cuts.is_empty() {
                    self.cuts.clear();
                    self.log("sim", format_args!("HEAL all links"));
                }
            }
            Fault::Add => {
                if self.admin.is_some() || view.everyone().count() >= MAX_GROUP {
                    return;
                }
                let spare: Vec<usize> = (0..self.hosts.len())
                    .filter(|h| {
                        let host = &self.hosts[*h];
                        matches!(host.proc, Proc::Off)
                            && host.disk.is_none()
                            && view.id_of(&host.addr).is_none()
                    })
                    .collect();
                let Some(&h) = self.rng.pick(&spare) else {
                    return;
                };
                self.stats.adds += 1;
                if self.rng.chance(500) {
                    let addr = self.hosts[h].addr.clone();
                    self.log("admin", format_args!("ADD {addr}, then start it"));
                    self.admin_start(MembershipChange::Add { addr }, Some(h));
                } else {
                    self.start_join(h);
                }
            }
            Fault::Remove => {
                if self.admin.is_some() || voters <= MIN_VOTERS || !may_crash {
                    return;
                }
                let leader_id = self.leader_host().and_then(|l| match &self.hosts[l].proc {
                    Proc::Up(n) => Some(n.id()),
                    _ => None,
                });
                let ids: Vec<ReplicaId> = view.members.keys().copied().collect();
                let id = match leader_id {
                    Some(l) if self.rng.chance(300) => l,
                    _ => match self.rng.pick(&ids) {
                        Some(id) => *id,
                        None => return,
                    },
                };
                self.stats.removes += 1;
                self.log("admin", format_args!("REMOVE replica {id}"));
                self.admin_start(
                    MembershipChange::Remove {
                        replica: id.to_string(),
                    },
                    None,
                );
            }
            Fault::IsolateClient => {
                let active = self.clients.len();
                if active == 0 {
                    return;
                }
                let c = self.rng.below(active as u64) as usize;
                // Sometimes longer than the lease, so the session expires.
                let lease = self.cfg.node.session_lease_ms;
                let d = self.rng.range(200, lease * 2);
                self.clients[c].isolated_until = self.now + d;
                let name = self.clients[c].name.clone();
                self.log("sim", format_args!("ISOLATE client {name} for {d} ms"));
            }
        }
    }

    /// Removed replicas are shut down and their hosts become spares.
    fn decommission_removed(&mut self) {
        for h in 0..self.hosts.len() {
            let Proc::Up(n) = &self.hosts[h].proc else {
                continue;
            };
            let gone = !self.hosts[h].routes.knows(n.id());
            let removed_long_ago = self.hosts[h]
                .removed_at
                .is_some_and(|t| self.now >= t + 1_000);
            if removed_long_ago || (gone && self.hosts[h].removed_at.is_none()) {
                if gone && self.hosts[h].removed_at.is_none() {
                    self.hosts[h].removed_at = Some(self.now);
                    continue;
                }
                let who = self.hosts[h].who();
                self.log(&who, format_args!("shut down and wiped (removed)"));
                let host = &mut self.hosts[h];
                host.proc = Proc::Off;
                host.disk = None;
                host.inc += 1;
                host.removed_at = None;
                host.decided = 0;
            }
        }
    }

    // ----- administrator ------------------------------------------------------------------

    fn admin_start(&mut self, change: MembershipChange, then_start: Option<usize>) {
        let target = self.leader_host().unwrap_or(0);
        self.admin = Some(AdminTask {
            change,
            then_start,
            target,
            conn: None,
            attempt: 0,
            tries: 0,
        });
        self.admin_send(Some(target));
    }

    fn admin_send(&mut self, target: Option<usize>) {
        let n = self.hosts.len() as u64;
        let random = self.rng.below(n) as usize;
        let Some(task) = &mut self.admin else {
            return;
        };
        if let Some(conn) = task.conn.take() {
            self.close_conn(conn);
        }
        let Some(task) = &mut self.admin else {
            return;
        };
        task.tries += 1;
        if task.tries > 30 {
            self.admin_finish("gave up");
            return;
        }
        task.target = target.unwrap_or(random);
        self.admin_attempts += 1;
        task.attempt = self.admin_attempts;
        let (host, attempt, change) = (task.target, task.attempt, task.change.clone());
        let conn = self.open_conn(host, End::Admin);
        if let Some(task) = &mut self.admin {
            task.conn = Some(conn);
        }
        self.send_to_replica(conn, ClientFrame::Membership(change));
        self.after(
            ADMIN_TIMEOUT_MS,
            Ev::AdminRetry {
                attempt,
                target: None,
            },
        );
    }

    fn admin_reply(&mut self, conn: ConnId, frame: ReplicaFrame) {
        let Some(task) = &self.admin else {
            return;
        };
        if task.conn != Some(conn) {
            return;
        }
        let attempt = task.attempt;
        let ReplicaFrame::Membership(reply) = frame else {
            return;
        };
        self.log(
            "admin",
            format_args!(
                "<- {}",
                trace::replica_frame(&ReplicaFrame::Membership(reply.clone()))
            ),
        );
        match reply {
            MembershipReply::Done { .. } => self.admin_finish("done"),
            MembershipReply::NotLeader { leader } => {
                let target = leader.and_then(|a| self.host_of(&a));
                let d = self.rng.range(20, 150);
                self.after(d, Ev::AdminRetry { attempt, target });
            }
            MembershipReply::Refused { reason } => {
                if reason.contains("in progress") {
                    self.after(
                        300,
                        Ev::AdminRetry {
                            attempt,
                            target: None,
                        },
                    );
                } else {
                    self.admin_finish("refused");
                }
            }
        }
    }

    fn admin_finish(&mut self, how: &str) {
        let Some(task) = self.admin.take() else {
            return;
        };
        if let Some(conn) = task.conn {
            self.close_conn(conn);
        }
        self.log("admin", format_args!("{:?}: {how}", task.change));
        // The added address must come up, whatever the answer: it may be in the view.
        if let Some(h) = task.then_start
            && matches!(self.hosts[h].proc, Proc::Off)
            && self.hosts[h].disk.is_none()
        {
            self.start_join(h);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Crash,
    Wipe,
    Partition,
    OneWay,
    IsolateLeader,
    Heal,
    Add,
    Remove,
    IsolateClient,
    RestartFollower,
    IsolateFollower,
}

fn ensure(name: &str, type_name: &str, args: Vec<Value>) -> Command {
    Command::EnsureObject {
        name: name.into(),
        type_name: type_name.into(),
        args,
    }
}

pub(super) fn show_view(v: &View) -> String {
    let ids = |m: &BTreeMap<ReplicaId, String>| {
        m.iter()
            .map(|(id, a)| format!("{id}@{}", a.split(':').next().unwrap_or(a)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if v.learners.is_empty() {
        format!("{} [{}]", v.number, ids(&v.members))
    } else {
        format!(
            "{} [{}] learners [{}]",
            v.number,
            ids(&v.members),
            ids(&v.learners)
        )
    }
}
