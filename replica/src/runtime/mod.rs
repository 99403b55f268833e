//! The tokio runtime around the sans-IO node: one task owns the node and performs its
//! actions; listener and peer-link tasks only move frames.

pub mod config;
pub mod join;
pub mod listener;
pub mod local;
pub mod peers;

pub use config::{ReplicaConfig, Timing};
pub use local::run_local;

use crate::command::{Command, ReplicaId, Value, View};
use crate::net::wire::{ClientFrame, PeerFrame, ReplicaFrame};
use crate::node::{Action, ConnId, Node, NodeConfig};
use crate::paxos;
use crate::state::StateMachine;
use listener::Input;
use peers::Peers;
use std::collections::HashMap;
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
    #[error("unknown object type {0:?} for -o (try counter, lock, semaphore, ...)")]
    UnknownObject(String),
    #[error("{0}")]
    Other(String),
}

/// How often the node's timers are advanced.
const TICK: Duration = Duration::from_millis(10);
/// Inputs queued for the node loop before connections wait.
const INPUT_QUEUE: usize = 16 * 1024;

/// Runs a replica until the process is stopped.
pub async fn run_replica(cfg: ReplicaConfig) -> Result<(), RuntimeError> {
    let running = start_replica(cfg).await?;
    running.wait().await
}

/// A replica running in this process.
pub struct Running {
    pub task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
    /// The current view, updated on every view change (for the nameserver and the like).
    pub view: watch::Receiver<View>,
    /// This replica's id in the view.
    pub id: ReplicaId,
}

impl Running {
    /// Waits until the replica stops, which it does only on a fatal error.
    pub async fn wait(self) -> Result<(), RuntimeError> {
        self.task
            .await
            .map_err(|e| RuntimeError::Other(format!("replica task failed: {e}")))?
    }
}

/// Binds, founds or joins, and returns the running replica. The listener is up when this
/// returns, so a caller may start the next replica at once.
pub async fn start_replica(cfg: ReplicaConfig) -> Result<Running, RuntimeError> {
    let me = cfg.advertised();
    let types = crate::object::ObjectTypes::builtin();
    let default_object = match &cfg.object {
        Some(name) => {
            let info = types
                .resolve(name)
                .ok_or_else(|| RuntimeError::UnknownObject(name.clone()))?;
            Some((info.default_name(), info.class_name().to_string()))
        }
        None => None,
    };
    let listener = listener::bind(&cfg.addr, cfg.port)
        .await
        .map_err(|source| RuntimeError::Bind {
            addr: me.clone(),
            source,
        })?;
    let (inputs_tx, inputs) = mpsc::channel(INPUT_QUEUE);
    let (identity_tx, identity) = watch::channel(0);
    tokio::spawn(listener::accept_loop(listener, inputs_tx, identity));

    let node_cfg = NodeConfig {
        paxos: paxos::Config {
            heartbeat_ms: cfg.timing.heartbeat.as_millis() as u64,
            election_ms: cfg.timing.election.as_millis() as u64,
            retransmit_ms: (cfg.timing.heartbeat.as_millis() as u64 * 4).max(20),
            ..paxos::Config::default()
        },
        session_lease_ms: cfg.timing.session_lease.as_millis() as u64,
    };
    let clock = Instant::now();
    let seed: u64 = rand::random();
    let state = StateMachine::new(types);
    let (node, first_actions, view) = match &cfg.bootstrap {
        None => {
            let first = default_object
                .iter()
                .map(|(name, class)| Command::EnsureObject {
                    name: name.clone(),
                    type_name: class.clone(),
                    args: Vec::<Value>::new(),
                })
                .collect();
            let (node, actions) = Node::found(&me, node_cfg, state, first, seed, 0);
            let view = node.view().clone();
            tracing::info!("replica 1 at {me} founded a new group");
            (node, actions, view)
        }
        Some(bootstrap) => {
            let joined = join::join(bootstrap, &me, cfg.timing.join_timeout)
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
            let node = Node::joined(&me, joined.id, joined.genesis, node_cfg, state, seed, 0);
            (node, Vec::new(), joined.view)
        }
    };
    let _ = identity_tx.send(node.id());
    let mut peers = Peers::new(node.id(), me.clone());
    peers.update(&view);
    let id = node.id();
    let (view_tx, view_rx) = watch::channel(view);
    let mut driver = Driver {
        node,
        peers,
        view: view_tx,
        clients: HashMap::new(),
        joiners: HashMap::new(),
        clock,
        _identity: identity_tx,
    };
    driver.perform(first_actions);
    Ok(Running {
        task: tokio::spawn(driver.run(inputs)),
        view: view_rx,
        id,
    })
}

struct Driver {
    node: Node,
    peers: Peers,
    clients: HashMap<ConnId, mpsc::Sender<ReplicaFrame>>,
    joiners: HashMap<ConnId, mpsc::Sender<PeerFrame>>,
    /// Published views, newest only; replayed history (older numbers) is not published.
    view: watch::Sender<View>,
    clock: Instant,
    _identity: watch::Sender<u64>,
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
                    // Drain what else is ready before the timers, so bursts batch well.
                    for _ in 0..256 {
                        match inputs.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = self.now();
                    let actions = self.node.on_tick(now);
                    self.perform(actions);
                }
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        let actions = match input {
            Input::ClientOpened { conn, tx } => {
                self.clients.insert(conn, tx);
                return;
            }
            Input::JoinerOpened { conn, tx } => {
                self.joiners.insert(conn, tx);
                return;
            }
            Input::Closed { conn } => {
                self.clients.remove(&conn);
                self.joiners.remove(&conn);
                self.node.on_closed(conn);
                return;
            }
            Input::Client { conn, frame } => match frame {
                ClientFrame::Request(cmd) => self.node.on_request(now, conn, cmd),
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
        };
        self.perform(actions);
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, msg } => self.peers.send(to, msg),
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
            }
        }
    }
}
