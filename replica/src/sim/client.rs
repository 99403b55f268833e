//! Simulated clients. They follow the rules of the client library (client/driver.rs): a
//! session opened with seq 0, then seq 1, 2, ...; `ack` is the lowest unanswered seq; a
//! call is retried with the same (session, seq) on whatever replica the client reaches
//! next; NotLeader hints are followed; keep-alives keep the lease; a call waits as long as
//! some replica answers like a leader, and is given up after `failover_ms` without one.
//!
//! Every call is recorded in the history: its invocation when first sent, its return when
//! its result arrives. Calls given up, or answered only by "session expired" (which does
//! not say whether an earlier try took effect), never return.

use super::rng::Rng;
use super::trace::{self, short};
use super::world::{
    CLIENT_WAKE_MS, COUNTER, DICT, DICT_KEYS, End, Ev, LOCK, QUEUE, SEMAPHORE, TEN, World,
};
use crate::command::{ClientCommand, Operation};
use crate::linearizability::{
    Call, CallId, CounterCall, DictCall, LockCall, Op, Outcome, QueueCall, SemaphoreCall, Val,
};
use crate::net::wire::{ClientFrame, ReplicaFrame, ReplyResult};
use crate::node::ConnId;
use std::collections::{BTreeMap, VecDeque};

/// Redirects followed at once before backing off (as the client library).
const QUICK_REDIRECTS: u32 = 3;
const BACKOFF_MIN_MS: u64 = 20;
const BACKOFF_MAX_MS: u64 = 640;

pub(super) struct Pending {
    /// None for session bookkeeping (OpenSession).
    op: Option<Op>,
    operation: Operation,
    call: Option<CallId>,
    since: u64,
}

enum Link {
    Down {
        retry_at: u64,
    },
    Connecting {
        conn: ConnId,
    },
    Up {
        conn: ConnId,
        host: usize,
        since: u64,
    },
}

/// The final reads: a script of calls, then the queue drained.
pub(super) struct Audit {
    script: VecDeque<Op>,
}

impl Audit {
    pub(super) fn new() -> Audit {
        let mut script = VecDeque::new();
        script.push_back(Op::counter(COUNTER, CounterCall::GetValue));
        for key in DICT_KEYS {
            script.push_back(Op::dict(DICT, DictCall::Get { key: key.into() }));
        }
        script.push_back(Op::lock(LOCK, LockCall::Locked));
        script.push_back(drain());
        Audit { script }
    }
}

fn drain() -> Op {
    Op::queue(QUEUE, QueueCall::Get { block: false })
}

pub(super) struct SimClient {
    pub(super) name: String,
    session: u64,
    /// History time when this session was opened (a lower bound for its end).
    opened_at: u64,
    open: bool,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    link: Link,
    keepalive_sent: Option<u64>,
    next_keepalive: u64,
    leaderless_since: Option<u64>,
    redirects: u32,
    backoff: u64,
    connect_failures: u64,
    known: Vec<usize>,
    cursor: usize,
    preferred: Option<usize>,
    pub(super) isolated_until: u64,
    /// No new calls (the faults are over).
    pub(super) stopped: bool,
    max_inflight: usize,
    next_call_at: u64,
    lock_held: bool,
    permits: u32,
    next_item: i64,
    number: i64,
    pub(super) audit: Option<Audit>,
}

impl SimClient {
    /// Client `number` (its queue items are unique to it) that first tries `known` hosts.
    pub(super) fn new(number: i64, name: String, known: Vec<usize>, rng: &mut Rng) -> SimClient {
        let cursor = rng.below(known.len().max(1) as u64) as usize;
        let max_inflight = rng.range(1, 2) as usize;
        SimClient {
            name,
            session: 0,
            opened_at: 0,
            open: false,
            next_seq: 0,
            pending: BTreeMap::new(),
            link: Link::Down { retry_at: 0 },
            keepalive_sent: None,
            next_keepalive: 0,
            leaderless_since: None,
            redirects: 0,
            backoff: BACKOFF_MIN_MS,
            connect_failures: 0,
            known,
            cursor,
            preferred: None,
            isolated_until: 0,
            stopped: false,
            max_inflight,
            next_call_at: 0,
            lock_held: false,
            permits: 0,
            next_item: 0,
            number,
            audit: None,
        }
    }

    pub(super) fn isolated(&self, now: u64) -> bool {
        now < self.isolated_until
    }

    fn ack(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.next_seq)
    }

    fn next_backoff(&mut self) -> u64 {
        let b = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX_MS);
        b
    }

    fn conn(&self) -> Option<ConnId> {
        match self.link {
            Link::Up { conn, .. } | Link::Connecting { conn } => Some(conn),
            Link::Down { .. } => None,
        }
    }

    fn user_calls(&self) -> impl Iterator<Item = &Op> {
        self.pending.values().filter_map(|p| p.op.as_ref())
    }
}

fn is_blocking(op: &Op) -> bool {
    matches!(
        op.call,
        Call::Queue(QueueCall::Put { block: true, .. })
            | Call::Queue(QueueCall::Get { block: true })
            | Call::Lock(LockCall::Acquire { blocking: true })
            | Call::Semaphore(SemaphoreCall::Acquire { blocking: true })
    )
}

fn owns_something(op: &Op) -> bool {
    matches!(op.call, Call::Lock(_) | Call::Semaphore(_))
}

impl World {
    fn client_log(&mut self, c: usize, what: std::fmt::Arguments<'_>) {
        let name = self.clients[c].name.clone();
        self.log(&name, what);
    }

    pub(super) fn client_wake(&mut self, c: usize) {
        let now = self.now;
        if self.clients[c].session == 0 {
            self.new_session(c);
        }
        match self.clients[c].link {
            Link::Down { retry_at } if now >= retry_at => self.client_connect(c),
            Link::Up { since, .. } => {
                let ka_timeout = 3 * self.cfg.keepalive_ms;
                let cl = &self.clients[c];
                let silent = cl.keepalive_sent.is_some_and(|t| now >= t + ka_timeout)
                    || (cl.leaderless_since.is_some() && now >= since + ka_timeout);
                if silent {
                    self.link_failed(c, "no answer");
                } else if cl.open && now >= cl.next_keepalive {
                    self.send_keepalive(c);
                }
            }
            _ => {}
        }
        if let Some(since) = self.clients[c].leaderless_since {
            self.give_up_overdue(c, since);
        }
        self.client_work(c);
        self.after(CLIENT_WAKE_MS, Ev::ClientWake { client: c });
    }

    fn client_connect(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        let host = match cl.preferred.take() {
            Some(h) => h,
            None => {
                let h = cl.known[cl.cursor % cl.known.len().max(1)];
                cl.cursor = cl.cursor.wrapping_add(1);
                h
            }
        };
        cl.keepalive_sent = None;
        let reachable = !cl.isolated(self.now);
        let conn = self.connect(host, End::Client(c), reachable);
        self.clients[c].link = Link::Connecting { conn };
    }

    pub(super) fn client_connected(&mut self, c: usize, conn: ConnId) {
        let cl = &mut self.clients[c];
        if !matches!(cl.link, Link::Connecting { conn: current } if current == conn) {
            self.close_conn(conn);
            return;
        }
        let Some(host) = self.conns.get(&conn).map(|k| k.host) else {
            return;
        };
        cl.link = Link::Up {
            conn,
            host,
            since: self.now,
        };
        cl.connect_failures = 0;
        cl.keepalive_sent = None;
        let seqs: Vec<u64> = cl.pending.keys().copied().collect();
        let open = cl.open;
        let name = self.hosts[host].addr.clone();
        self.client_log(c, format_args!("connected to {name}"));
        self.send_to_replica(conn, ClientFrame::Status);
        // Everything in flight goes again, unchanged: the replicas answer retries from
        // their reply cache.
        for seq in seqs {
            self.send_request(c, seq);
        }
        if open {
            self.send_keepalive(c);
        }
    }

    pub(super) fn client_connect_failed(&mut self, c: usize, conn: ConnId) {
        let now = self.now;
        let cl = &mut self.clients[c];
        if !matches!(cl.link, Link::Connecting { conn: current } if current == conn) {
            return;
        }
        cl.connect_failures += 1;
        let delay = if cl
            .connect_failures
            .is_multiple_of(cl.known.len().max(1) as u64)
        {
            cl.next_backoff()
        } else {
            0
        };
        cl.link = Link::Down {
            retry_at: now + delay,
        };
        cl.leaderless_since.get_or_insert(now);
    }

    pub(super) fn client_link_lost(&mut self, c: usize, conn: ConnId) {
        if self.clients[c].conn() == Some(conn) {
            self.clients[c].link = Link::Down { retry_at: 0 };
            self.link_failed(c, "connection lost");
        }
    }

    fn drop_link(&mut self, c: usize) {
        if let Some(conn) = self.clients[c].conn() {
            self.close_conn(conn);
        }
    }

    fn link_failed(&mut self, c: usize, why: &str) {
        self.client_log(c, format_args!("link down: {why}"));
        self.drop_link(c);
        let now = self.now;
        let cl = &mut self.clients[c];
        let b = cl.next_backoff();
        cl.link = Link::Down { retry_at: now + b };
        cl.leaderless_since.get_or_insert(now);
    }

    /// Not the leader: go to the hint, or elsewhere after a pause.
    fn redirect(&mut self, c: usize, hint: Option<String>) {
        let now = self.now;
        let current = match self.clients[c].link {
            Link::Up { host, .. } => Some(host),
            _ => None,
        };
        let hint = hint
            .and_then(|a| self.host_of(&a))
            .filter(|h| Some(*h) != current);
        self.drop_link(c);
        let cl = &mut self.clients[c];
        cl.redirects += 1;
        let delay = match hint {
            Some(h) => {
                if !cl.known.contains(&h) {
                    cl.known.push(h);
                }
                cl.preferred = Some(h);
                if cl.redirects <= QUICK_REDIRECTS {
                    0
                } else {
                    cl.next_backoff()
                }
            }
            None => cl.next_backoff(),
        };
        cl.link = Link::Down {
            retry_at: now + delay,
        };
        cl.leaderless_since.get_or_insert(now);
    }

    /// A replica answered like a leader.
    fn proven(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        cl.leaderless_since = None;
        cl.backoff = BACKOFF_MIN_MS;
        cl.redirects = 0;
    }

    fn send_keepalive(&mut self, c: usize) {
        let now = self.now;
        let ka = self.cfg.keepalive_ms;
        let cl = &mut self.clients[c];
        let Some(conn) = cl.conn() else {
            return;
        };
        let session = cl.session;
        cl.next_keepalive = now + ka;
        cl.keepalive_sent.get_or_insert(now);
        self.send_to_replica(conn, ClientFrame::KeepAlive { session });
    }

    fn send_request(&mut self, c: usize, seq: u64) {
        let cl = &self.clients[c];
        let (Link::Up { conn, .. }, Some(p)) = (&cl.link, cl.pending.get(&seq)) else {
            return;
        };
        let cmd = ClientCommand {
            session: cl.session,
            seq,
            ack: cl.ack(),
            op: p.operation.clone(),
            owner: None,
        };
        let conn = *conn;
        self.send_to_replica(conn, ClientFrame::Request(cmd));
    }

    fn enqueue(&mut self, c: usize, p: Pending) -> u64 {
        let cl = &mut self.clients[c];
        let seq = cl.next_seq;
        cl.next_seq += 1;
        cl.pending.insert(seq, p);
        seq
    }

    /// A fresh session: new id, seq 0 opens it.
    fn new_session(&mut self, c: usize) {
        let session = self.rng.next_u64() | 1;
        let at = self.stamp();
        let now = self.now;
        let cl = &mut self.clients[c];
        cl.session = session;
        cl.opened_at = at;
        cl.open = false;
        cl.next_seq = 0;
        cl.pending.clear();
        cl.lock_held = false;
        cl.permits = 0;
        self.client_log(c, format_args!("opens session {}", short(session)));
        let seq = self.enqueue(
            c,
            Pending {
                op: None,
                operation: Operation::OpenSession,
                call: None,
                since: now,
            },
        );
        self.send_request(c, seq);
    }

    /// The replicas forgot the session: its calls end unknown, its locks and permits are
    /// gone, and a new session takes over.
    fn session_expired(&mut self, c: usize) {
        let (old, opened_at) = (self.clients[c].session, self.clients[c].opened_at);
        self.client_log(c, format_args!("session {} expired", short(old)));
        let at = self.stamp();
        let id = self.history.invoke(old, Op::end_session(), opened_at);
        self.history.ret(id, at, Outcome::none());
        self.stats.session_ends += 1;
        self.new_session(c);
    }

    /// Gives up a session whose locks or permits it can no longer account for: closes it
    /// (best effort; its lease ends it otherwise) and starts another.
    fn abandon_session(&mut self, c: usize) {
        let cl = &self.clients[c];
        if let Link::Up { conn, .. } = cl.link {
            let cmd = ClientCommand {
                session: cl.session,
                seq: cl.next_seq,
                ack: cl.next_seq,
                op: Operation::CloseSession,
                owner: None,
            };
            self.send_to_replica(conn, ClientFrame::Request(cmd));
        }
        let old = self.clients[c].session;
        self.client_log(c, format_args!("abandons session {}", short(old)));
        self.new_session(c);
    }

    pub(super) fn client_frame(&mut self, c: usize, conn: ConnId, frame: ReplicaFrame) {
        if !matches!(self.clients[c].link, Link::Up { conn: current, .. } if current == conn) {
            return;
        }
        // Any frame shows the connection is alive.
        self.clients[c].keepalive_sent = None;
        if !matches!(frame, ReplicaFrame::Status(_)) {
            self.client_log(c, format_args!("<- {}", trace::replica_frame(&frame)));
        }
        let session = self.clients[c].session;
        match frame {
            ReplicaFrame::Reply {
                session: s,
                seq,
                result,
            } if s == session => self.on_reply(c, seq, result),
            ReplicaFrame::Reply { .. } => {}
            ReplicaFrame::KeepAliveAck { session: s, alive } => {
                if s == session {
                    self.proven(c);
                    if !alive && self.clients[c].open {
                        self.session_expired(c);
                    }
                }
            }
            ReplicaFrame::NotLeader { leader } => self.redirect(c, leader),
            ReplicaFrame::Status(report) => {
                let hosts: Vec<usize> = report
                    .view
                    .members
                    .values()
                    .filter_map(|a| self.host_of(a))
                    .collect();
                let cl = &mut self.clients[c];
                for h in hosts {
                    if !cl.known.contains(&h) {
                        cl.known.push(h);
                    }
                }
            }
            ReplicaFrame::Membership(_) | ReplicaFrame::Faults(_) => {}
        }
    }

    fn on_reply(&mut self, c: usize, seq: u64, result: ReplyResult) {
        match result {
            ReplyResult::Ok(_) | ReplyResult::Err { .. } => {
                self.proven(c);
                if let Some(outcome) = Outcome::from_reply(&result) {
                    self.complete(c, seq, outcome);
                }
            }
            ReplyResult::NotLeader { leader } => self.redirect(c, leader),
            ReplyResult::SessionExpired => {
                if self.clients[c].pending.contains_key(&seq) {
                    self.proven(c);
                    self.session_expired(c);
                }
            }
            ReplyResult::Unavailable { reason } => {
                self.link_failed(c, &format!("unavailable: {reason}"));
            }
        }
    }

    fn complete(&mut self, c: usize, seq: u64, outcome: Outcome) {
        let Some(p) = self.clients[c].pending.remove(&seq) else {
            return; // a duplicate answer to a retry
        };
        let Some(op) = p.op else {
            if p.operation == Operation::OpenSession {
                let now = self.now;
                let ka = self.cfg.keepalive_ms;
                let cl = &mut self.clients[c];
                cl.open = true;
                cl.next_keepalive = now + ka;
            }
            return;
        };
        if let Some(call) = p.call {
            let at = self.stamp();
            self.history.ret(call, at, outcome.clone());
        }
        let cl = &mut self.clients[c];
        match (&op.call, &outcome) {
            // A blocking acquire returns None once granted, a non-blocking one True.
            (Call::Lock(LockCall::Acquire { blocking: true }), Outcome::Ok(Val::Nil))
            | (Call::Lock(LockCall::Acquire { blocking: false }), Outcome::Ok(Val::Bool(true))) => {
                cl.lock_held = true
            }
            (Call::Lock(LockCall::Release), _) => cl.lock_held = false,
            (Call::Semaphore(SemaphoreCall::Acquire { .. }), Outcome::Ok(Val::Bool(true))) => {
                cl.permits += 1
            }
            (Call::Semaphore(SemaphoreCall::Release { .. }), Outcome::Ok(_)) => {
                cl.permits = cl.permits.saturating_sub(1)
            }
            _ => {}
        }
        if self.clients[c].audit.is_some() {
            self.audit_result(c, op, outcome, p.call);
        }
    }

    fn audit_result(&mut self, c: usize, op: Op, outcome: Outcome, call: Option<CallId>) {
        if let Call::Counter(CounterCall::GetValue) = &op.call {
            self.final_counter = call;
        }
        let Some(audit) = &mut self.clients[c].audit else {
            return;
        };
        // Drain the queue: read again until it is empty.
        if let (Call::Queue(_), Outcome::Ok(_)) = (&op.call, &outcome) {
            audit.script.push_front(drain());
        }
        if audit.script.is_empty() {
            self.clients[c].audit = None;
            self.clients[c].stopped = true;
            self.audit_done();
        }
    }

    /// Calls that waited `failover_ms` without any leader fail (they never return in the
    /// history). A session that may own a lock or permit it cannot account for is given
    /// up.
    fn give_up_overdue(&mut self, c: usize, since: u64) {
        if self.clients[c].audit.is_some() {
            return;
        }
        let limit = self.cfg.failover_ms;
        let now = self.now;
        let overdue: Vec<u64> = self.clients[c]
            .pending
            .iter()
            .filter(|(_, p)| p.op.is_some() && now >= p.since.max(since) + limit)
            .map(|(seq, _)| *seq)
            .collect();
        let mut abandon = false;
        for seq in overdue {
            if let Some(p) = self.clients[c].pending.remove(&seq)
                && let Some(op) = p.op
            {
                abandon |= owns_something(&op);
                self.client_log(c, format_args!("gives up on {op}"));
            }
        }
        if abandon {
            self.abandon_session(c);
        }
    }

    fn client_work(&mut self, c: usize) {
        let now = self.now;
        let cl = &self.clients[c];
        if cl.stopped || !cl.open || now < cl.next_call_at {
            return;
        }
        let inflight = cl.user_calls().count();
        let op = if cl.audit.is_some() {
            if inflight > 0 {
                return;
            }
            match self.clients[c]
                .audit
                .as_mut()
                .and_then(|a| a.script.pop_front())
            {
                Some(op) => op,
                None => return,
            }
        } else {
            if inflight >= cl.max_inflight {
                return;
            }
            let op = self.choose_op(c);
            let pause = self.rng.range(5, 80);
            self.clients[c].next_call_at = now + pause;
            op
        };
        self.call(c, op);
    }

    fn call(&mut self, c: usize, op: Op) {
        let at = self.stamp();
        let session = self.clients[c].session;
        let call = self.history.invoke(session, op.clone(), at);
        let operation = op.operation();
        let seq = self.clients[c].next_seq;
        self.client_log(
            c,
            format_args!(
                "calls {} as {}/{seq}",
                trace::op(&operation),
                short(session)
            ),
        );
        let now = self.now;
        let seq = self.enqueue(
            c,
            Pending {
                op: Some(op),
                operation,
                call: Some(call),
                since: now,
            },
        );
        self.send_request(c, seq);
    }

    /// The workload: mostly short calls on every object; a held lock or permit is given
    /// back soon; at most one blocking call in flight, and never a wait on oneself.
    fn choose_op(&mut self, c: usize) -> Op {
        let cl = &self.clients[c];
        let busy_lock = cl.user_calls().any(|o| matches!(o.call, Call::Lock(_)));
        let busy_sem = cl
            .user_calls()
            .any(|o| matches!(o.call, Call::Semaphore(_)));
        let blocking = cl.user_calls().any(is_blocking);
        let (lock_held, permits) = (cl.lock_held, cl.permits);
        let number = cl.number;
        if lock_held && !busy_lock && self.rng.chance(500) {
            return Op::lock(LOCK, LockCall::Release);
        }
        if permits > 0 && !busy_sem && self.rng.chance(400) {
            return Op::semaphore(SEMAPHORE, SemaphoreCall::Release { n: 1 });
        }
        let key = |w: &mut World| {
            let i = w.rng.below(DICT_KEYS.len() as u64) as usize;
            DICT_KEYS[i].to_string()
        };
        let counter = |call| Op::counter(COUNTER, call);
        let ten = |call| Op::counter(TEN, call);
        let roll = self.rng.below(100);
        match roll {
            0..10 => counter(CounterCall::Increment),
            10..13 => ten(CounterCall::Increment),
            13..14 => ten(CounterCall::Decrement),
            14..18 => counter(CounterCall::Decrement),
            18..23 => counter(CounterCall::GetValue),
            23..26 => ten(CounterCall::GetValue),
            26..34 => Op::dict(DICT, DictCall::Get { key: key(self) }),
            34..42 => {
                let key = key(self);
                let value = Val::Int(self.rng.below(8) as i64);
                Op::dict(DICT, DictCall::Set { key, value })
            }
            42..45 => Op::dict(DICT, DictCall::Delete { key: key(self) }),
            45..50 => {
                let key = key(self);
                let expected = if self.rng.chance(300) {
                    Val::Nil
                } else {
                    Val::Int(self.rng.below(8) as i64)
                };
                let new = Val::Int(self.rng.below(8) as i64);
                Op::dict(DICT, DictCall::Cas { key, expected, new })
            }
            50..60 => {
                let cl = &mut self.clients[c];
                cl.next_item += 1;
                // Unique items: each put can be traced to its get.
                let item = Val::Int(number * 1_000_000 + cl.next_item);
                let block = !blocking && self.rng.chance(300);
                Op::queue(QUEUE, QueueCall::Put { item, block })
            }
            60..68 => Op::queue(QUEUE, QueueCall::Get { block: false }),
            68..71 if !blocking => Op::queue(QUEUE, QueueCall::Get { block: true }),
            71..80 if !lock_held && !busy_lock => {
                let blocking = !blocking && self.rng.chance(600);
                Op::lock(LOCK, LockCall::Acquire { blocking })
            }
            80..83 => Op::lock(LOCK, LockCall::Locked),
            83..92 if permits == 0 && !busy_sem => {
                let blocking = !blocking && self.rng.chance(500);
                Op::semaphore(SEMAPHORE, SemaphoreCall::Acquire { blocking })
            }
            _ => counter(CounterCall::Increment),
        }
    }
}
