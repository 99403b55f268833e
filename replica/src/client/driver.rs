//! The client's one background task. It owns the session, the calls in flight and the
//! connection to the leader, and reacts to new calls, frames and timers. Owning all of it
//! in one task keeps the failover logic free of locks and easy to follow.
//!
//! Rules it keeps:
//! - every call gets the next seq of the session and stays in `pending` until its reply
//!   arrives, so `ack` (the lowest pending seq) is exact, and a reconnect re-sends all of
//!   `pending` with the same session and seq (the replicas answer retries from their cache);
//! - calls made while a session is being opened wait in `queued`, and get their seq only
//!   once the replicas know the session;
//! - a connection is "proven" once it answered like a leader (a reply or a keep-alive ack);
//!   while no connection is proven, calls fail after `failover_timeout` with `NoReplica`;
//! - a client that found the group through its domain looks the domain up again after every
//!   round of addresses that all failed: replicas that restarted elsewhere (a pod's new IP)
//!   are only found that way, so such a client never gives up on a stale list early.

use super::ClientError;
use super::ClientOptions;
use super::addr::check_addr;
use super::conn::{self, Event};
use crate::command::{ClientCommand, Operation, SessionId, Value};
use crate::net::wire::{ClientFrame, ReplicaFrame, ReplyResult};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Redirects followed at once before the client starts backing off (a hint can be stale
/// while an election is going on, and two stale hints must not ping-pong at full speed).
const QUICK_REDIRECTS: usize = 3;
/// Frames from connections queue up to this many before the reader waits.
const EVENT_QUEUE: usize = 1024;

pub(crate) type Reply = oneshot::Sender<Result<Value, ClientError>>;

/// A call handed to the driver by a [`Client`](super::Client) handle.
pub(crate) struct NewCall {
    pub op: Operation,
    pub reply: Reply,
}

/// State the handles read without asking the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub session: AtomicU64,
}

struct Pending {
    op: Operation,
    /// None when nobody waits (a re-opened session, or a caller that gave up).
    reply: Option<Reply>,
    since: Instant,
}

impl Pending {
    fn answer(&mut self, result: Result<Value, ClientError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SessionState {
    /// OpenSession (seq 0) is pending.
    Opening,
    Open,
    /// OpenSession was refused; the next call tries a fresh session.
    Failed,
}

/// Aborts the connection's reader task when the link is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Link {
    Down {
        retry_at: Instant,
    },
    Connecting {
        id: u64,
        addr: String,
        _task: AbortOnDrop,
    },
    Up {
        id: u64,
        addr: String,
        tx: mpsc::UnboundedSender<ClientFrame>,
        since: Instant,
        _task: AbortOnDrop,
    },
}

/// The addresses to try: the seeds, then members learned from status reports; a leader
/// hint jumps the queue.
struct Peers {
    list: Vec<String>,
    cursor: usize,
    preferred: Option<String>,
}

impl Peers {
    fn next(&mut self) -> Option<String> {
        if let Some(p) = self.preferred.take() {
            return Some(p);
        }
        let addr = self.list.get(self.cursor % self.list.len().max(1)).cloned();
        self.cursor = self.cursor.wrapping_add(1);
        addr
    }

    fn learn(&mut self, addr: &str) {
        if check_addr(addr).is_ok() && !self.list.iter().any(|a| a == addr) {
            self.list.push(addr.to_string());
        }
    }

    fn prefer(&mut self, addr: String) {
        self.learn(&addr);
        self.preferred = Some(addr);
    }

    /// A new list from discovery replaces the old one: addresses it no longer names
    /// belong to no member any more.
    fn replace(&mut self, list: Vec<String>) {
        if self.preferred.as_ref().is_some_and(|p| !list.contains(p)) {
            self.preferred = None;
        }
        self.list = list;
        self.cursor = 0;
    }

    fn len(&self) -> usize {
        self.list.len().max(1)
    }
}

/// Doubling pauses with jitter, so many clients do not reconnect in lockstep.
struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        base.mul_f64(rand::random_range(0.75..1.25))
    }

    fn reset(&mut self) {
        self.current = self.min;
    }
}

pub(crate) fn random_session() -> SessionId {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

pub(crate) struct Driver {
    opts: ClientOptions,
    calls: mpsc::UnboundedReceiver<NewCall>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    session: SessionId,
    state: SessionState,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    queued: VecDeque<Pending>,
    link: Link,
    next_link: u64,
    peers: Peers,
    backoff: Backoff,
    /// Since when no connection has been proven; None while one is.
    leaderless_since: Option<Instant>,
    tried: Vec<String>,
    last_error: String,
    ever_connected: bool,
    /// The name each discovered address was published under in SRV records.
    published: HashMap<String, String>,
    /// The group's domain when the seeds came from SRV discovery: looked up again when
    /// every address failed.
    domain: Option<String>,
    /// A lookup of `domain` is under way.
    discovering: bool,
    connect_failures: usize,
    redirects: usize,
    next_keepalive: Instant,
    keepalive_sent: Option<Instant>,
    closed: bool,
}

impl Driver {
    /// A driver that opens `shared.session` and answers `opened` when it is open.
    pub(crate) fn new(
        opts: ClientOptions,
        seeds: Vec<String>,
        published: HashMap<String, String>,
        domain: Option<String>,
        calls: mpsc::UnboundedReceiver<NewCall>,
        shared: Arc<Shared>,
        opened: Reply,
    ) -> Driver {
        let now = Instant::now();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let session = shared.session.load(Ordering::Relaxed);
        let backoff = Backoff {
            min: opts.backoff_min,
            max: opts.backoff_max.max(opts.backoff_min),
            current: opts.backoff_min,
        };
        let mut pending = BTreeMap::new();
        pending.insert(
            0,
            Pending {
                op: Operation::OpenSession,
                reply: Some(opened),
                since: now,
            },
        );
        Driver {
            next_keepalive: now + opts.keepalive_interval,
            opts,
            calls,
            events,
            events_tx,
            shared,
            session,
            state: SessionState::Opening,
            next_seq: 1,
            pending,
            queued: VecDeque::new(),
            link: Link::Down { retry_at: now },
            next_link: 0,
            peers: Peers {
                list: seeds,
                cursor: 0,
                preferred: None,
            },
            backoff,
            leaderless_since: Some(now),
            tried: Vec::new(),
            last_error: "no attempt yet".into(),
            ever_connected: false,
            domain,
            published,
            discovering: false,
            connect_failures: 0,
            redirects: 0,
            keepalive_sent: None,
            closed: false,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                call = self.calls.recv() => match call {
                    Some(call) => self.on_call(call),
                    None => {
                        self.farewell();
                        return;
                    }
                },
                Some(event) = self.events.recv() => self.on_event(event),
                () = tokio::time::sleep_until(wake) => self.on_timer(Instant::now()),
            }
            if self.closed {
                return;
            }
        }
    }

    // ---- calls -------------------------------------------------------------------------

    fn on_call(&mut self, call: NewCall) {
        if call.reply.is_closed() {
            return;
        }
        let p = Pending {
            op: call.op,
            reply: Some(call.reply),
            since: Instant::now(),
        };
        match self.state {
            SessionState::Open => {
                let seq = self.enqueue(p);
                self.send_request(seq);
            }
            SessionState::Opening => self.queued.push_back(p),
            SessionState::Failed => {
                self.queued.push_back(p);
                self.new_session();
            }
        }
    }

    fn enqueue(&mut self, p: Pending) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, p);
        seq
    }

    /// The lowest seq whose reply has not arrived (everything below has).
    fn ack(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.next_seq)
    }

    fn send_request(&self, seq: u64) {
        let (Link::Up { tx, .. }, Some(p)) = (&self.link, self.pending.get(&seq)) else {
            return;
        };
        let cmd = ClientCommand {
            session: self.session,
            seq,
            ack: self.ack(),
            op: p.op.clone(),
            owner: None,
        };
        // A closed writer reports itself through a Lost event.
        let _ = tx.send(ClientFrame::Request(cmd));
    }

    fn send_frame(&self, frame: ClientFrame) {
        if let Link::Up { tx, .. } = &self.link {
            let _ = tx.send(frame);
        }
    }

    fn flush_queued(&mut self) {
        while let Some(p) = self.queued.pop_front() {
            if p.reply.as_ref().is_some_and(|r| !r.is_closed()) {
                let seq = self.enqueue(p);
                self.send_request(seq);
            }
        }
    }

    /// Starts a fresh session: new id, seq 0 = OpenSession.
    fn new_session(&mut self) {
        self.session = random_session();
        self.shared.session.store(self.session, Ordering::Relaxed);
        self.state = SessionState::Opening;
        self.next_seq = 0;
        let seq = self.enqueue(Pending {
            op: Operation::OpenSession,
            reply: None,
            since: Instant::now(),
        });
        self.send_request(seq);
    }

    fn complete(&mut self, seq: u64, result: Result<Value, ClientError>) {
        let Some(mut p) = self.pending.remove(&seq) else {
            return; // a duplicate answer to a retry
        };
        match p.op {
            Operation::OpenSession => match result {
                Ok(value) => {
                    self.state = SessionState::Open;
                    self.next_keepalive = Instant::now() + self.opts.keepalive_interval;
                    p.answer(Ok(value));
                    self.flush_queued();
                }
                Err(e) => {
                    self.state = SessionState::Failed;
                    self.fail_queued(&e);
                    p.answer(Err(e));
                }
            },
            Operation::CloseSession => {
                p.answer(result);
                self.shut_down();
            }
            _ => p.answer(result),
        }
    }

    /// The replicas forgot the session: its calls fail, and a new session takes over.
    fn session_expired(&mut self) {
        let mut closing = None;
        for (_, mut p) in std::mem::take(&mut self.pending) {
            if matches!(p.op, Operation::CloseSession) {
                closing = p.reply.take();
            } else {
                p.answer(Err(ClientError::SessionExpired));
            }
        }
        if let Some(reply) = closing {
            // Closing an expired session is done.
            let _ = reply.send(Ok(Value::Nil));
            self.shut_down();
            return;
        }
        tracing::warn!(session = self.session, "session expired; opening a new one");
        self.new_session();
    }

    fn shut_down(&mut self) {
        self.closed = true;
        self.fail_waiting(&ClientError::Closed);
    }

    fn fail_queued(&mut self, error: &ClientError) {
        for mut p in self.queued.drain(..) {
            p.answer(Err(error.clone()));
        }
    }

    /// Fails every waiting call. An OpenSession stays pending (without its waiter) so the
    /// session still gets opened.
    fn fail_waiting(&mut self, error: &ClientError) {
        self.fail_queued(error);
        self.pending.retain(|_, p| {
            p.answer(Err(error.clone()));
            matches!(p.op, Operation::OpenSession)
        });
    }

    fn no_replica(&self) -> ClientError {
        ClientError::NoReplica {
            tried: self.tried.clone(),
            last_error: self.last_error.clone(),
        }
    }

    /// All handles are gone: end the session so its locks go now, not after the lease.
    fn farewell(&mut self) {
        if self.state == SessionState::Open {
            let seq = self.enqueue(Pending {
                op: Operation::CloseSession,
                reply: None,
                since: Instant::now(),
            });
            self.send_request(seq);
        }
        // Dropping the link lets the writer flush this last frame, then close.
    }

    // ---- connection events -------------------------------------------------------------

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected { link, replica, tx } => {
                if matches!(&self.link, Link::Connecting { id, .. } if *id == link) {
                    self.on_connected(replica, tx);
                }
            }
            Event::ConnectFailed { link, error } => {
                if matches!(&self.link, Link::Connecting { id, .. } if *id == link) {
                    self.on_connect_failed(&error);
                }
            }
            Event::Frame { link, frame } => {
                if matches!(&self.link, Link::Up { id, .. } if *id == link) {
                    self.on_frame(frame);
                }
            }
            Event::Lost { link, error } => {
                if matches!(&self.link, Link::Up { id, .. } if *id == link) {
                    tracing::debug!(%error, "connection lost");
                    self.link_failed(error);
                }
            }
            Event::Discovered(found) => self.on_discovered(found),
        }
    }

    fn on_connected(&mut self, replica: u64, tx: mpsc::UnboundedSender<ClientFrame>) {
        let now = Instant::now();
        let old = std::mem::replace(&mut self.link, Link::Down { retry_at: now });
        let Link::Connecting { id, addr, _task } = old else {
            return;
        };
        tracing::debug!(%addr, replica, "connected");
        self.link = Link::Up {
            id,
            addr,
            tx,
            since: now,
            _task,
        };
        self.ever_connected = true;
        self.connect_failures = 0;
        self.keepalive_sent = None;
        // Learn the members, then re-send what is in flight, unchanged.
        self.send_frame(ClientFrame::Status);
        let seqs: Vec<u64> = self.pending.keys().copied().collect();
        for seq in seqs {
            self.send_request(seq);
        }
        if self.state == SessionState::Open {
            // Also tells quickly whether this replica leads.
            self.send_keepalive(now);
        }
    }

    fn on_connect_failed(&mut self, error: &ClientError) {
        let now = Instant::now();
        self.last_error = conn::reason(error);
        tracing::debug!(error = %self.last_error, "connect failed");
        self.connect_failures += 1;
        // The group refused our credentials: every waiting call hears it now, as it
        // would hear a refused call (another replica would refuse them too).
        if error.is_remote("PermissionError") {
            self.fail_waiting(error);
        }
        // Nothing answered at all: say so now rather than after the failover timeout, unless
        // the addresses came from DNS, where a new lookup may find the members elsewhere.
        // Replicas that answered but refused us (TLS only, a certificate that does not
        // check out) would refuse us wherever DNS sends us: that is said at once too.
        let refused = matches!(error, ClientError::Protocol(_));
        if !self.ever_connected
            && self.connect_failures >= self.peers.len()
            && (self.domain.is_none() || refused)
        {
            let e = self.no_replica();
            self.fail_waiting(&e);
        }
        // Try the next address at once, but pause (and look the domain up again) after a
        // full round of failures.
        let delay = if self.connect_failures.is_multiple_of(self.peers.len()) {
            self.rediscover();
            self.backoff.next()
        } else {
            Duration::ZERO
        };
        self.link = Link::Down {
            retry_at: now + delay,
        };
        self.leaderless_since.get_or_insert(now);
    }

    /// Looks the group's domain up again in the background (one lookup at a time).
    fn rediscover(&mut self) {
        let Some(domain) = self.domain.clone() else {
            return;
        };
        if self.discovering {
            return;
        }
        self.discovering = true;
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let found = crate::dns::discover::members_named(&domain, None)
                .await
                .map_err(|e| e.to_string());
            let _ = events.send(Event::Discovered(found)).await;
        });
    }

    fn on_discovered(&mut self, found: Result<Vec<(String, String)>, String>) {
        self.discovering = false;
        match found {
            Ok(named) if !named.is_empty() => {
                let list: Vec<String> = named.iter().map(|(a, _)| a.clone()).collect();
                self.published = named.into_iter().collect();
                let news = list != self.peers.list;
                self.peers.replace(list);
                if news {
                    // Addresses we have not failed on yet: try them now, not after the pause.
                    tracing::debug!(list = ?self.peers.list, "the domain now lists other replicas");
                    self.backoff.reset();
                    if let Link::Down { retry_at } = &mut self.link {
                        *retry_at = Instant::now();
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "looking the domain up again failed");
                self.last_error = format!("{}; looking the domain up again: {e}", self.last_error);
            }
        }
    }

    fn link_failed(&mut self, error: String) {
        let now = Instant::now();
        self.last_error = error;
        self.link = Link::Down {
            retry_at: now + self.backoff.next(),
        };
        self.leaderless_since.get_or_insert(now);
    }

    fn link_addr(&self) -> Option<&str> {
        match &self.link {
            Link::Up { addr, .. } | Link::Connecting { addr, .. } => Some(addr),
            Link::Down { .. } => None,
        }
    }

    /// This replica does not lead: go to its hint, or elsewhere after a pause.
    fn redirect(&mut self, hint: Option<String>) {
        let now = Instant::now();
        let current = self.link_addr().map(str::to_string);
        self.last_error = format!("{} is not the leader", current.as_deref().unwrap_or("?"));
        let hint = hint.filter(|h| check_addr(h).is_ok() && current.as_deref() != Some(h));
        tracing::debug!(?current, ?hint, "not the leader");
        self.redirects += 1;
        let delay = match hint {
            Some(h) => {
                self.peers.prefer(h);
                if self.redirects <= QUICK_REDIRECTS {
                    Duration::ZERO
                } else {
                    self.backoff.next()
                }
            }
            None => self.backoff.next(),
        };
        self.link = Link::Down {
            retry_at: now + delay,
        };
        self.leaderless_since.get_or_insert(now);
    }

    /// The connection answered like a leader.
    fn proven(&mut self) {
        self.leaderless_since = None;
        self.tried.clear();
        self.backoff.reset();
        self.redirects = 0;
    }

    fn on_frame(&mut self, frame: ReplicaFrame) {
        // Any frame shows the connection is alive.
        self.keepalive_sent = None;
        match frame {
            ReplicaFrame::Reply {
                session,
                seq,
                result,
            } => {
                if session == self.session {
                    self.on_reply(seq, result);
                }
            }
            ReplicaFrame::KeepAliveAck { session, alive } => {
                if session == self.session {
                    self.proven();
                    if !alive && self.state == SessionState::Open {
                        self.session_expired();
                    }
                }
            }
            ReplicaFrame::NotLeader { leader } => self.redirect(leader),
            ReplicaFrame::Status(report) => {
                for (_, addr) in report.view.everyone() {
                    self.peers.learn(addr);
                }
            }
            // Membership changes and fault injection use their own connections.
            ReplicaFrame::Membership(_) | ReplicaFrame::Faults(_) => {}
        }
    }

    fn on_reply(&mut self, seq: u64, result: ReplyResult) {
        match result {
            ReplyResult::Ok(value) => {
                self.proven();
                self.complete(seq, Ok(value));
            }
            ReplyResult::Err { kind, message } => {
                self.proven();
                self.complete(seq, Err(ClientError::Remote { kind, message }));
            }
            ReplyResult::NotLeader { leader } => self.redirect(leader),
            ReplyResult::SessionExpired => {
                if self.pending.contains_key(&seq) {
                    self.proven();
                    self.session_expired();
                }
            }
            ReplyResult::Unavailable { reason } => {
                let addr = self.link_addr().unwrap_or("?").to_string();
                self.link_failed(format!("{addr} is unavailable: {reason}"));
            }
        }
    }

    // ---- timers ------------------------------------------------------------------------

    fn send_keepalive(&mut self, now: Instant) {
        self.send_frame(ClientFrame::KeepAlive {
            session: self.session,
        });
        self.next_keepalive = now + self.opts.keepalive_interval;
        self.keepalive_sent.get_or_insert(now);
    }

    /// Why the connected replica counts as dead: a keep-alive went unanswered, or it never
    /// answered like a leader (nor redirected us) since we connected.
    fn silence(&self, now: Instant) -> Option<String> {
        let Link::Up { since, .. } = &self.link else {
            return None;
        };
        let limit = self.opts.keepalive_timeout;
        if self.keepalive_sent.is_some_and(|sent| now >= sent + limit) {
            return Some(format!("no answer to keep-alive within {limit:?}"));
        }
        if self.leaderless_since.is_some() && now >= *since + limit {
            return Some(format!("no answer within {limit:?} of connecting"));
        }
        None
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(3600);
        match &self.link {
            Link::Down { retry_at } => wake = wake.min(*retry_at),
            Link::Up { since, .. } => {
                if self.state == SessionState::Open {
                    wake = wake.min(self.next_keepalive);
                }
                if let Some(sent) = self.keepalive_sent {
                    wake = wake.min(sent + self.opts.keepalive_timeout);
                }
                if self.leaderless_since.is_some() {
                    wake = wake.min(*since + self.opts.keepalive_timeout);
                }
            }
            Link::Connecting { .. } => {}
        }
        if let Some(since) = self.leaderless_since {
            for p in self.waiting() {
                wake = wake.min(self.give_up_at(p, since));
            }
        }
        wake
    }

    fn waiting(&self) -> impl Iterator<Item = &Pending> {
        self.pending
            .values()
            .chain(self.queued.iter())
            .filter(|p| p.reply.is_some())
    }

    fn give_up_at(&self, p: &Pending, leaderless_since: Instant) -> Instant {
        p.since.max(leaderless_since) + self.opts.failover_timeout
    }

    fn on_timer(&mut self, now: Instant) {
        if let Link::Down { retry_at } = self.link {
            if now >= retry_at {
                self.start_connect(now);
            }
        } else if let Some(why) = self.silence(now) {
            let addr = self.link_addr().unwrap_or("?").to_string();
            self.link_failed(format!("{addr}: {why}"));
        } else if matches!(self.link, Link::Up { .. })
            && self.state == SessionState::Open
            && now >= self.next_keepalive
        {
            self.send_keepalive(now);
        }
        if let Some(since) = self.leaderless_since {
            self.give_up_overdue(now, since);
        }
    }

    /// Fails the calls that waited longer than the failover timeout without a leader.
    fn give_up_overdue(&mut self, now: Instant, since: Instant) {
        let failover = self.opts.failover_timeout;
        let overdue = |p: &Pending| p.reply.is_some() && now >= p.since.max(since) + failover;
        if !self.waiting().any(overdue) {
            return;
        }
        let error = self.no_replica();
        tracing::debug!(%error, "giving up on calls");
        for p in self.queued.iter_mut().filter(|p| overdue(p)) {
            p.answer(Err(error.clone()));
        }
        self.queued.retain(|p| p.reply.is_some());
        self.pending.retain(|_, p| {
            if overdue(p) {
                p.answer(Err(error.clone()));
                matches!(p.op, Operation::OpenSession)
            } else {
                true
            }
        });
    }

    fn start_connect(&mut self, now: Instant) {
        let Some(addr) = self.peers.next() else {
            self.link = Link::Down {
                retry_at: now + self.backoff.next(),
            };
            return;
        };
        if !self.tried.contains(&addr) {
            self.tried.push(addr.clone());
        }
        let id = self.next_link;
        self.next_link += 1;
        let mut creds = self.opts.credentials();
        // An address SRV discovery found is checked for the name it was published under.
        if let Some(name) = self.published.get(&addr) {
            creds.tls = creds.tls.map(|tls| tls.or_server_name(name));
        }
        let task = tokio::spawn(conn::run_link(
            id,
            addr.clone(),
            self.opts.connect_timeout,
            creds,
            self.events_tx.clone(),
        ));
        self.keepalive_sent = None;
        self.link = Link::Connecting {
            id,
            addr,
            _task: AbortOnDrop(task),
        };
    }
}
