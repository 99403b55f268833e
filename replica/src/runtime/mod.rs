//! The tokio runtime around the sans-IO node: one task owns the node and performs its
//! actions; listener and peer-link tasks only move frames.

pub mod config;
pub mod join;
pub mod listener;
pub mod local;
pub mod peers;

pub use config::{ReplicaConfig, Timing};
pub use local::run_local;

use crate::auth::{self, AuthFile, Token};
use crate::command::{Command, ReplicaId, Value, View};
use crate::net::secure::{ClientTls, ReplicaTls};
use crate::net::wire::{ClientFrame, Fault, MembershipReply, PeerFrame, ReplicaFrame, ReplyResult};
use crate::node::{Action, ConnId, Node, NodeConfig};
use crate::paxos;
use crate::state::StateMachine;
use crate::storage::{Identity, Storage, StorageError};
use listener::Input;
use peers::Peers;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot join through {bootstrap}: {reason}")]
    Join { bootstrap: String, reason: String },
    #[error(
        "unknown object type {0:?} for -o: not a built-in type (counter, lock, semaphore, ...) and {1}"
    )]
    UnknownObject(String, String),
    #[error("-o {0}: {1}")]
    BadObjectType(String, String),
    #[error("data directory: {0}")]
    Storage(#[from] StorageError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::net::secure::TlsError),
    #[error("--auth-file: {0}")]
    Auth(#[from] crate::auth::AuthFileError),
    #[error("{0}")]
    Other(String),
}

/// How often the node's timers are advanced.
const TICK: Duration = Duration::from_millis(10);
/// Inputs queued for the node loop before connections wait.
const INPUT_QUEUE: usize = 16 * 1024;

/// Runs a replica until the process is stopped.
pub async fn run_replica(cfg: ReplicaConfig) -> Result<(), RuntimeError> {
    let dns = cfg.dns.clone();
    let dns_sockets = match &dns {
        Some(settings) => Some(
            crate::dns::bind(settings)
                .await
                .map_err(|e| RuntimeError::Other(e.to_string()))?,
        ),
        None => None,
    };
    let running = start_replica(cfg).await?;
    let nameserver = match (dns, dns_sockets) {
        (Some(settings), Some(sockets)) => Some(
            crate::dns::start(&settings, sockets, &running)
                .await
                .map_err(|e| RuntimeError::Other(e.to_string()))?,
        ),
        _ => None,
    };
    let served = async {
        match nameserver {
            Some(ns) => match ns.task.await {
                Ok(Ok(())) => "the DNS server stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the DNS server failed: {e}"),
            },
            None => std::future::pending().await,
        }
    };
    let inputs = running.inputs.clone();
    let task = running.task;
    tokio::select! {
        stopped = task => match stopped {
            Ok(result) => result,
            Err(e) => Err(RuntimeError::Other(format!("replica task failed: {e}"))),
        },
        why = served => Err(RuntimeError::Other(why)),
        () = stop_signal() => {
            // Kubernetes deletes pods with SIGTERM: a leader hands over first, so a
            // rolling update costs no election timeout.
            hand_over_via(&inputs, Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            tracing::info!("stopped by signal");
            Ok(())
        }
    }
}

/// Hands leadership over if this replica leads (before the process stops); the
/// successor's id. Waits for the node loop at most `limit`.
async fn hand_over_via(inputs: &mpsc::Sender<Input>, limit: Duration) -> Option<ReplicaId> {
    let (done, answer) = tokio::sync::oneshot::channel();
    inputs.send(Input::HandOver { done }).await.ok()?;
    tokio::time::timeout(limit, answer).await.ok()?.ok()?
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Who leads, as a replica sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<ReplicaId>,
    /// Ballot round of the leader's term.
    pub round: u64,
    /// This replica leads.
    pub is_leader: bool,
    /// This replica left the view (removed) or halted: its nameserver withdraws the zone
    /// rather than keep answering with the last view it knew.
    pub withdrawn: bool,
}

/// What a replica knows of another member from the links that member opened to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPresence {
    /// The IP it announced in its latest hello (`--advertise-ip`), if it announces one.
    pub announced: Option<std::net::IpAddr>,
    /// A link from it is open now.
    pub connected: bool,
    /// Bumped on every new link from it: a member that reconnected may have moved, so a
    /// host name looked up before is looked up again.
    pub generation: u64,
}

/// Every member that ever linked to this replica, by id.
pub type Presence = BTreeMap<ReplicaId, PeerPresence>;

/// A replica running in this process.
pub struct Running {
    pub task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
    /// The current view, updated on every view change (for the nameserver and the like).
    pub view: watch::Receiver<View>,
    /// This replica's id in the view.
    pub id: ReplicaId,
    /// Leadership as this replica sees it, updated as it changes.
    pub leadership: watch::Receiver<Leadership>,
    /// The other members' links to this replica and the IPs they announced.
    pub presence: watch::Receiver<Presence>,
    /// `--advertise-ip`: the IP this replica announces (and its nameserver publishes).
    pub advertise_ip: Option<std::net::IpAddr>,
    /// The node loop's input queue, for a graceful stop.
    inputs: mpsc::Sender<listener::Input>,
}

impl Running {
    /// Waits until the replica stops, which it does only on a fatal error.
    pub async fn wait(self) -> Result<(), RuntimeError> {
        self.task
            .await
            .map_err(|e| RuntimeError::Other(format!("replica task failed: {e}")))?
    }
}

/// A joining replica runs the group's copy of its `-o` type, never its own file: it says
/// so when the two differ.
async fn compare_type_with_group(
    me: String,
    dotted: String,
    local_sha: String,
    tls: Option<ClientTls>,
    token: Option<Token>,
) {
    let opts = crate::client::ClientOptions {
        call_timeout: Some(Duration::from_secs(10)),
        tls,
        token,
        ..crate::client::ClientOptions::default()
    };
    let Ok(client) = crate::client::Client::connect(&me, opts).await else {
        return;
    };
    match client.show_type(&dotted).await {
        Ok(group) if group.sha256 != local_sha => tracing::warn!(
            "-o {dotted}: the group runs other code for this type (sha256 {}) than the local file (sha256 {local_sha}); the group's copy is used (load the file with `concoord type load --replace` to change it)",
            group.sha256
        ),
        Ok(_) => tracing::info!("-o {dotted}: the local file matches the group's code"),
        Err(e) => {
            tracing::warn!("-o {dotted}: cannot compare the local file with the group's type: {e}")
        }
    }
    let _ = client.close().await;
}

/// Binds, founds or joins, and returns the running replica. The listener is up when this
/// returns, so a caller may start the next replica at once.
pub async fn start_replica(cfg: ReplicaConfig) -> Result<Running, RuntimeError> {
    let me = cfg.advertised();
    let types = crate::object::ObjectTypes::builtin();
    let mut user_type = None;
    let default_object = match &cfg.object {
        Some(name) => match types.resolve(name) {
            Some(info) => Some((info.default_name(), info.class_name().to_string())),
            None => {
                let found = crate::object::source::find(name, &cfg.object_path)
                    .map_err(|e| RuntimeError::UnknownObject(name.clone(), e.to_string()))?;
                // Refuse a broken file before founding anything, with the interpreter's
                // message; the group compiles its own copy again when it applies it.
                let compiled =
                    crate::object::UserType::compile(&found.module, &found.class, &found.source)
                        .map_err(|e| RuntimeError::BadObjectType(name.clone(), e.to_string()))?;
                tracing::info!(
                    "-o {name}: user type {} from {} (sha256 {})",
                    compiled.dotted_name(),
                    found.path.display(),
                    compiled.sha256
                );
                let default = (compiled.default_name(), compiled.dotted_name());
                user_type = Some(compiled);
                Some(default)
            }
        },
        None => None,
    };
    // The disk first: a replica that cannot trust its data must not even listen.
    let mut storage = None;
    let mut recovered = None;
    if let Some(dir) = &cfg.data_dir {
        let opened = Storage::open(dir)?;
        if let Some(ident) = opened.identity {
            if ident.addr != me {
                return Err(RuntimeError::Other(format!(
                    "{} holds the data of replica {} at {}, not of {me}; use its address or another directory",
                    dir.display(),
                    ident.id,
                    ident.addr
                )));
            }
            recovered = Some((ident, opened.durable));
        }
        storage = Some(opened.storage);
    }
    let tls = cfg.tls.clone().map(ReplicaTls::load).transpose()?;
    let auth = cfg.auth_file.clone().map(AuthFile::load).transpose()?;
    if let Some(auth) = &auth {
        tracing::info!(
            "auth: on; identities and roles from {}",
            auth.path().display()
        );
    }
    let listener = listener::bind(&cfg.addr, cfg.port)
        .await
        .map_err(|source| RuntimeError::Bind {
            addr: me.clone(),
            source,
        })?;
    let (inputs_tx, inputs) = mpsc::channel(INPUT_QUEUE);
    let (identity_tx, identity) = watch::channel((0, 0));
    tokio::spawn(listener::accept_loop(
        listener,
        inputs_tx.clone(),
        identity,
        tls.clone(),
        auth.clone(),
    ));
    if tls.is_some() || auth.is_some() {
        tokio::spawn(reload_files(tls.clone(), auth.clone()));
    }

    let node_cfg = NodeConfig {
        paxos: paxos::Config {
            heartbeat_ms: cfg.timing.heartbeat.as_millis() as u64,
            election_ms: cfg.timing.election.as_millis() as u64,
            retransmit_ms: (cfg.timing.heartbeat.as_millis() as u64 * 4).max(20),
            log_keep: cfg.timing.snapshot_every,
            durable: cfg.data_dir.is_some(),
            ..paxos::Config::default()
        },
        session_lease_ms: cfg.timing.session_lease.as_millis() as u64,
        snapshot_every: cfg.timing.snapshot_every,
    };
    let clock = Instant::now();
    let seed: u64 = rand::random();
    let state = StateMachine::new(types);
    let (node, first_actions, view) = match (&cfg.bootstrap, recovered) {
        (_, Some((ident, durable))) => {
            let node = Node::recover(
                &me,
                ident.id,
                ident.genesis,
                node_cfg,
                state,
                &durable,
                seed,
                0,
            )
            .map_err(RuntimeError::Other)?;
            tracing::info!(
                "replica {} at {me} recovered from its disk: snapshot at slot {}, {} records, decided up to slot {}",
                ident.id,
                durable.snapshot.as_ref().map_or(0, |s| s.slot),
                durable.records.len(),
                node.paxos().decided_upto()
            );
            if cfg.bootstrap.is_some() {
                tracing::info!(
                    "-b ignored: this replica is already a member (its data directory says so)"
                );
            }
            let view = node.view().clone();
            (node, Vec::new(), view)
        }
        (None, None) => {
            let define = user_type.iter().map(|t| Command::EnsureType {
                module: t.module.clone(),
                class: t.class.clone(),
                source: t.source.to_string(),
            });
            let first = define
                .chain(
                    default_object
                        .iter()
                        .map(|(name, class)| Command::EnsureObject {
                            name: name.clone(),
                            type_name: class.clone(),
                            args: Vec::<Value>::new(),
                        }),
                )
                .collect();
            let (node, actions) = Node::found(&me, node_cfg, state, first, seed, 0);
            if let Some(st) = &mut storage {
                // The genesis on disk carries the group id founding drew, so a recovered
                // founder still belongs to (and is recognised by) its group.
                let mut genesis = View::founded_by(&me);
                genesis.group = node.view().group;
                st.save_identity(&Identity {
                    id: 1,
                    addr: me.clone(),
                    genesis,
                })?;
            }
            let view = node.view().clone();
            tracing::info!("replica 1 at {me} founded a new group");
            (node, actions, view)
        }
        (Some(bootstrap), None) => {
            let joined = join::join(
                bootstrap,
                &me,
                cfg.timing.join_timeout,
                tls.as_deref(),
                cfg.token.clone(),
            )
            .await
            .map_err(|reason| RuntimeError::Join {
                bootstrap: bootstrap.clone(),
                reason,
            })?;
            tracing::info!(
                "replica {} at {me} joined view {} through {bootstrap}",
                joined.id,
                joined.view.number
            );
            if let Some((name, _)) = &default_object {
                tracing::info!("-o {name}: a joining replica uses the group's objects");
            }
            if let Some(ty) = &user_type {
                tokio::spawn(compare_type_with_group(
                    me.clone(),
                    ty.dotted_name(),
                    ty.sha256.clone(),
                    tls.as_deref().map(ReplicaTls::client),
                    cfg.token.clone(),
                ));
            }
            if let Some(st) = &mut storage {
                st.save_identity(&Identity {
                    id: joined.id,
                    addr: me.clone(),
                    genesis: joined.genesis.clone(),
                })?;
            }
            let node = Node::joined(&me, joined.id, joined.genesis, node_cfg, state, seed, 0);
            (node, Vec::new(), joined.view)
        }
    };
    let group = node.view().group;
    let _ = identity_tx.send((node.id(), group));
    let mut peers = Peers::new(
        node.id(),
        me.clone(),
        cfg.advertise_ip,
        group,
        tls,
        cfg.token.clone(),
    );
    peers.update(&view);
    let id = node.id();
    let (view_tx, view_rx) = watch::channel(view);
    let (leadership_tx, leadership_rx) = watch::channel(Leadership::default());
    let (presence_tx, presence_rx) = watch::channel(Presence::new());
    let mut driver = Driver {
        presence: presence_tx,
        inbound: HashMap::new(),
        node,
        peers,
        view: view_tx,
        leadership: leadership_tx,
        clients: HashMap::new(),
        identities: HashMap::new(),
        auth,
        joiners: HashMap::new(),
        clock,
        _identity: identity_tx,
        storage,
        halted: None,
        pending: Vec::new(),
        cut: cfg.allow_fault_injection.then(HashSet::new),
    };
    driver.perform(first_actions);
    driver.flush();
    Ok(Running {
        task: tokio::spawn(driver.run(inputs)),
        view: view_rx,
        id,
        leadership: leadership_rx,
        presence: presence_rx,
        advertise_ip: cfg.advertise_ip,
        inputs: inputs_tx,
    })
}

/// How often the certificate and auth files are checked for a change (a rotated Kubernetes
/// Secret appears in the pod within about a minute; SIGHUP reloads at once).
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Re-reads the certificates and the auth file on SIGHUP and whenever a file's content
/// changes. New connections use the new certificates; open links and sessions carry on.
/// The auth file applies to the next request of every connection. A bad file is logged and
/// what is in use stays.
async fn reload_files(tls: Option<Arc<ReplicaTls>>, auth: Option<Arc<AuthFile>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut check = tokio::time::interval(RELOAD_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let forced = tokio::select! {
            _ = check.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        if let Some(tls) = &tls {
            match tls.reload(forced) {
                Ok(true) => tracing::info!(
                    "TLS: certificates re-read from {}",
                    tls.files().cert.display()
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!("TLS: keeping the certificates in use: {e}"),
            }
        }
        if let Some(auth) = &auth {
            match auth.reload(forced) {
                Ok(true) => tracing::info!("auth: re-read {}", auth.path().display()),
                Ok(false) => {}
                Err(e) => tracing::warn!("auth: keeping the identities in use: {e}"),
            }
        }
    }
}

struct Driver {
    node: Node,
    peers: Peers,
    clients: HashMap<ConnId, mpsc::Sender<ReplicaFrame>>,
    /// Who each client connection proved to be.
    identities: HashMap<ConnId, auth::Identity>,
    /// `--auth-file`: None lets every client do everything.
    auth: Option<Arc<AuthFile>>,
    joiners: HashMap<ConnId, mpsc::Sender<PeerFrame>>,
    /// Published views, newest only; replayed history (older numbers) is not published.
    view: watch::Sender<View>,
    leadership: watch::Sender<Leadership>,
    presence: watch::Sender<Presence>,
    /// The open link from each member, by connection (the newest wins).
    inbound: HashMap<ReplicaId, ConnId>,
    clock: Instant,
    _identity: watch::Sender<(ReplicaId, u64)>,
    /// `-w`: the write-ahead log; None keeps everything in memory.
    storage: Option<Storage>,
    /// Set when the disk failed: the replica stops taking part (its memory may be ahead of
    /// its disk) and tells clients why, until it is restarted.
    halted: Option<String>,
    /// Actions of the current batch, performed after their records are durable.
    pending: Vec<Action>,
    /// Peers whose links a test harness cut; None when fault injection is not allowed.
    cut: Option<HashSet<ReplicaId>>,
}

impl Driver {
    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) -> Result<(), RuntimeError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                input = inputs.recv() => {
                    let Some(input) = input else {
                        return Err(RuntimeError::Other("listener stopped".into()));
                    };
                    self.handle(input);
                    // Drain what else is ready before the timers, so bursts batch well
                    // (and share one fsync: group commit).
                    for _ in 0..256 {
                        match inputs.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                    self.flush();
                    self.run_put_off_calls();
                }
                _ = tick.tick() => {
                    if self.halted.is_none() {
                        let now = self.now();
                        let actions = self.node.on_tick(now);
                        self.perform(actions);
                        self.flush();
                        self.run_put_off_calls();
                    }
                }
            }
        }
    }

    /// Runs the user-object calls the burst's decided slots put off, once its messages and
    /// records are out (a follower acknowledges before its interpreter runs), and sends
    /// their replies.
    fn run_put_off_calls(&mut self) {
        if self.halted.is_some() {
            return;
        }
        let actions = self.node.run_put_off_calls();
        if !actions.is_empty() {
            self.perform(actions);
            self.flush();
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        let actions = match input {
            Input::ClientOpened { conn, tx, who } => {
                self.clients.insert(conn, tx);
                self.identities.insert(conn, who);
                return;
            }
            Input::JoinerOpened { conn, tx } => {
                self.joiners.insert(conn, tx);
                return;
            }
            Input::Closed { conn } => {
                self.clients.remove(&conn);
                self.identities.remove(&conn);
                self.joiners.remove(&conn);
                self.peer_link_closed(conn);
                self.node.on_closed(conn);
                return;
            }
            Input::Client { conn, frame } if self.halted.is_some() => {
                self.refuse_halted(conn, frame);
                return;
            }
            Input::Join { .. } | Input::Peer { .. } if self.halted.is_some() => return,
            Input::Peer { from, .. } if self.cut.as_ref().is_some_and(|c| c.contains(&from)) => {
                return;
            }
            Input::Client { conn, frame } if !self.permits(conn, &frame) => return,
            Input::Client { conn, frame } => match frame {
                ClientFrame::Request(mut cmd) => {
                    // Whatever the client put there, the owner is who it proved to be.
                    cmd.owner = self.owner_of(conn);
                    self.node.on_request(now, conn, cmd)
                }
                ClientFrame::Membership(change) => {
                    tracing::info!("membership change asked: {change:?}");
                    self.node.on_membership(now, conn, change)
                }
                ClientFrame::Fault(fault) => vec![Action::Reply {
                    conn,
                    frame: ReplicaFrame::Faults(self.inject(fault)),
                }],
                ClientFrame::KeepAlive { session } => self.node.on_keepalive(now, conn, session),
                ClientFrame::Status => {
                    vec![Action::Reply {
                        conn,
                        frame: ReplicaFrame::Status(self.node.status()),
                    }]
                }
            },
            Input::Join { conn, addr } => {
                tracing::info!("{addr} asks to join");
                self.node.on_join(now, conn, addr)
            }
            Input::Peer { from, msg } => self.node.on_peer(now, from, msg),
            Input::PeerHello { id, addr, ip, conn } => {
                self.peers.ensure(id, &addr);
                self.peer_link_opened(id, ip, conn);
                return;
            }
            Input::HandOver { done } => {
                let (successor, actions) = self.node.hand_over(now);
                if let Some(s) = successor {
                    tracing::info!("stopping: handed leadership to replica {s}");
                }
                let _ = done.send(successor);
                actions
            }
        };
        self.perform(actions);
    }

    /// A member linked to us (again): note the IP it announced, and that it may have moved.
    fn peer_link_opened(&mut self, id: ReplicaId, ip: Option<std::net::IpAddr>, conn: ConnId) {
        self.inbound.insert(id, conn);
        self.presence.send_modify(|all| {
            let p = all.entry(id).or_default();
            p.announced = ip;
            p.connected = true;
            p.generation += 1;
        });
    }

    fn peer_link_closed(&mut self, conn: ConnId) {
        let Some(id) = self
            .inbound
            .iter()
            .find(|(_, c)| **c == conn)
            .map(|(id, _)| *id)
        else {
            return;
        };
        self.inbound.remove(&id);
        self.presence.send_modify(|all| {
            if let Some(p) = all.get_mut(&id) {
                p.connected = false;
            }
        });
    }

    /// Whether the client's role allows the frame, and the session it names is its own. A
    /// refused request is answered here with a `PermissionError` and goes no further; a
    /// refused keep-alive or status gets no answer (the listener closes a connection whose
    /// identity left the auth file).
    fn permits(&mut self, conn: ConnId, frame: &ClientFrame) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        let node = &self.node;
        let message = match self.identities.get(&conn) {
            None => Some("this connection is not authenticated".to_string()),
            Some(who) => auth::refusal(Some(&auth.policy()), who, frame, |object, method| {
                node.is_read_only_call(object, method)
            })
            .or_else(|| {
                let session = match frame {
                    ClientFrame::Request(cmd) => cmd.session,
                    ClientFrame::KeepAlive { session } => *session,
                    _ => return None,
                };
                match node.session_owner(session) {
                    Some(owner) if owner != who.owner_key().as_deref() => {
                        Some(format!("session {session:x} belongs to another identity"))
                    }
                    _ => None,
                }
            }),
        };
        let Some(message) = message else {
            return true;
        };
        tracing::info!("refused: {message}");
        let reason = format!("PermissionError: {message}");
        let frame = match frame {
            ClientFrame::Request(cmd) => ReplicaFrame::Reply {
                session: cmd.session,
                seq: cmd.seq,
                result: ReplyResult::Err {
                    kind: "PermissionError".into(),
                    message,
                },
            },
            ClientFrame::Membership(_) => {
                ReplicaFrame::Membership(MembershipReply::Refused { reason })
            }
            ClientFrame::Fault(_) => ReplicaFrame::Faults(Err(reason)),
            ClientFrame::Status | ClientFrame::KeepAlive { .. } => return false,
        };
        self.dispatch(vec![Action::Reply { conn, frame }]);
        false
    }

    /// The identity a connection's commands are stamped with (`ClientCommand::owner`).
    fn owner_of(&self, conn: ConnId) -> Option<String> {
        self.auth.as_ref()?;
        self.identities
            .get(&conn)
            .and_then(auth::Identity::owner_key)
    }

    /// A halted replica still answers, with the reason it cannot serve.
    fn refuse_halted(&mut self, conn: ConnId, frame: ClientFrame) {
        let reason = self.halted.clone().unwrap_or_default();
        let frame = match frame {
            ClientFrame::Request(cmd) => ReplicaFrame::Reply {
                session: cmd.session,
                seq: cmd.seq,
                result: ReplyResult::Unavailable { reason },
            },
            ClientFrame::KeepAlive { .. } => ReplicaFrame::NotLeader { leader: None },
            ClientFrame::Status => {
                let mut report = self.node.status();
                report.state = format!("halted: {reason}");
                ReplicaFrame::Status(report)
            }
            ClientFrame::Membership(_) => {
                ReplicaFrame::Membership(MembershipReply::Refused { reason })
            }
            ClientFrame::Fault(_) => ReplicaFrame::Faults(Err(reason)),
        };
        self.dispatch(vec![Action::Reply { conn, frame }]);
    }

    fn inject(&mut self, fault: Fault) -> Result<Vec<ReplicaId>, String> {
        let Some(cut) = &mut self.cut else {
            return Err(
                "fault injection is off (start the replica with --allow-fault-injection)".into(),
            );
        };
        tracing::warn!("test harness: {fault:?}");
        match fault {
            Fault::CutLink { peer } => {
                cut.insert(peer);
            }
            Fault::RestoreLink { peer } => {
                cut.remove(&peer);
            }
            Fault::RestoreAll => cut.clear(),
        }
        let mut now_cut: Vec<ReplicaId> = cut.iter().copied().collect();
        now_cut.sort();
        Ok(now_cut)
    }

    /// Queues actions; [`Driver::flush`] performs them once their records are durable.
    fn perform(&mut self, actions: Vec<Action>) {
        self.pending.extend(actions);
    }

    /// Writes the batch's records with one fsync, then performs its actions. If the disk
    /// fails, none of them leaves this replica: nothing unsaved is ever acknowledged.
    fn flush(&mut self) {
        let actions = std::mem::take(&mut self.pending);
        if let Some(storage) = &mut self.storage {
            let needs_disk = actions
                .iter()
                .any(|a| matches!(a, Action::Persist(_) | Action::SaveSnapshot(..)));
            if needs_disk && let Err(e) = write_batch(storage, &actions) {
                let reason = format!(
                    "this replica stopped: it cannot write its log in {}: {e}{}",
                    storage.dir().display(),
                    if e.is_full() {
                        " (free disk space, then restart it)"
                    } else {
                        ""
                    }
                );
                self.halt(reason);
                return;
            }
        }
        self.dispatch(actions);
        self.publish_leadership();
    }

    fn publish_leadership(&self) {
        let paxos = self.node.paxos();
        let now = Leadership {
            leader: paxos.leader(),
            round: paxos.ballot().round,
            is_leader: paxos.is_leader(),
            withdrawn: self.halted.is_some() || self.node.serving_state() == "removed",
        };
        self.leadership.send_if_modified(|old| {
            let changed = *old != now;
            *old = now;
            changed
        });
    }

    fn halt(&mut self, reason: String) {
        tracing::error!("{reason}");
        // Clients waiting here learn why and go elsewhere (their retries are answered
        // exactly once by the others).
        let replies = self.node.fail_waiting_with(&reason);
        self.halted = Some(reason);
        self.dispatch(replies);
        self.publish_leadership();
    }

    fn dispatch(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    if !self.cut.as_ref().is_some_and(|c| c.contains(&to)) {
                        self.peers.send(to, msg);
                    }
                }
                Action::Reply { conn, frame } => {
                    if let Some(tx) = self.clients.get(&conn)
                        && tx.try_send(frame).is_err()
                    {
                        // The client reads too slowly (or is gone): drop it; it reconnects
                        // and retries, and the reply cache answers.
                        tracing::warn!(conn, "client queue full; dropping the connection");
                        self.clients.remove(&conn);
                    }
                }
                Action::JoinReply { conn, frame } => {
                    if let Some(tx) = self.joiners.get(&conn) {
                        let _ = tx.try_send(frame);
                    }
                }
                Action::ViewChanged(view) => {
                    tracing::info!(
                        "view {}: {:?}",
                        view.number,
                        view.members.values().collect::<Vec<_>>()
                    );
                    self.peers.update(&view);
                    self.view.send_if_modified(|current| {
                        let newer = view.number > current.number;
                        if newer {
                            *current = view;
                        }
                        newer
                    });
                }
                Action::Removed => {
                    tracing::warn!("this replica was removed from the view; it no longer serves");
                }
                Action::Persist(_) | Action::SaveSnapshot(..) => {}
                Action::Fatal(reason) => self.halt(reason),
            }
        }
    }
}

/// Appends the batch's records (and snapshots) and syncs once. The fsync blocks this task
/// only: other tasks keep reading sockets meanwhile, so the next batch grows (group commit).
fn write_batch(storage: &mut Storage, actions: &[Action]) -> Result<(), StorageError> {
    let write = |storage: &mut Storage| {
        for a in actions {
            match a {
                Action::Persist(r) => storage.append(r)?,
                Action::SaveSnapshot(snapshot, records) => {
                    storage.save_snapshot(snapshot, records)?
                }
                _ => {}
            }
        }
        storage.sync()
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| write(storage))
        }
        _ => write(storage),
    }
}
