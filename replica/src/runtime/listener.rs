//! The replica's one port: accepts connections, checks the hello, and turns frames from
//! clients, peers and joiners into inputs for the node loop.
//!
//! Nothing read from a socket can stop the replica: a bad frame closes that connection
//! with a logged reason, and other connections carry on.

use crate::command::ReplicaId;
use crate::net::frame::{self, FrameError};
use crate::net::wire::{
    ClientFrame, Hello, MAGIC, PROTOCOL_VERSION, PeerFrame, ReplicaFrame, Role, Welcome,
};
use crate::node::ConnId;
use crate::paxos::Message;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Frames queued for one client before the client is considered too slow and dropped.
const CONN_QUEUE: usize = 8192;

/// What connections tell the node loop.
pub enum Input {
    ClientOpened {
        conn: ConnId,
        tx: mpsc::Sender<ReplicaFrame>,
    },
    Client {
        conn: ConnId,
        frame: ClientFrame,
    },
    JoinerOpened {
        conn: ConnId,
        tx: mpsc::Sender<PeerFrame>,
    },
    Join {
        conn: ConnId,
        addr: String,
    },
    Peer {
        from: ReplicaId,
        msg: Message,
    },
    /// A replica opened a link to us: we need one back to answer it, even when our view
    /// does not know it yet (we lag) or any more (it was removed).
    PeerHello {
        id: ReplicaId,
        addr: String,
        /// The IP it announced (`--advertise-ip`), if any.
        ip: Option<std::net::IpAddr>,
        conn: ConnId,
    },
    Closed {
        conn: ConnId,
    },
    /// The process is stopping (SIGTERM): a leader hands leadership to a follower first.
    /// Answered with the successor, if there was one to hand to.
    HandOver {
        done: tokio::sync::oneshot::Sender<Option<ReplicaId>>,
    },
}

/// Our identity and group once known (a joiner has neither until it is added); the
/// welcome carries the id, and peers of another group are refused.
pub type IdentityWatch = watch::Receiver<(ReplicaId, u64)>;

pub async fn accept_loop(listener: TcpListener, inputs: mpsc::Sender<Input>, me: IdentityWatch) {
    let next_conn = Arc::new(AtomicU64::new(1));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let inputs = inputs.clone();
        let (me, group) = *me.borrow();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, conn, inputs.clone(), me, group).await {
                match e {
                    FrameError::Closed => tracing::debug!(%peer, "connection closed"),
                    e => tracing::info!(%peer, "closing connection: {e}"),
                }
            }
            let _ = inputs.send(Input::Closed { conn }).await;
        });
    }
}

async fn serve(
    stream: TcpStream,
    conn: ConnId,
    inputs: mpsc::Sender<Input>,
    me: ReplicaId,
    my_group: u64,
) -> Result<(), FrameError> {
    let (r, w) = stream.into_split();
    let mut reader = frame::reader(r);
    let mut writer = frame::writer(w);
    let hello: Hello = frame::read_frame_within(&mut reader, frame::HANDSHAKE_TIMEOUT).await?;
    if let Role::Peer { group, id, .. } = &hello.role
        && *group != 0
        && my_group != 0
        && *group != my_group
    {
        let reason = format!(
            "replica {id} belongs to group {group:x}, this replica to group {my_group:x}; a replica that lost its disk must rejoin with -b"
        );
        let _ = frame::write_frame(
            &mut writer,
            &Welcome::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(FrameError::Handshake(reason));
    }
    if hello.magic != MAGIC || hello.version != PROTOCOL_VERSION {
        let reason = format!(
            "unsupported protocol {:?} version {} (this replica speaks {MAGIC:?} version {PROTOCOL_VERSION})",
            hello.magic, hello.version
        );
        let _ = frame::write_frame(
            &mut writer,
            &Welcome::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(FrameError::Handshake(reason));
    }
    let welcome = Welcome::Accepted {
        version: PROTOCOL_VERSION,
        replica: me,
    };
    frame::write_frame(&mut writer, &welcome).await?;
    match hello.role {
        Role::Client => {
            let (tx, rx) = mpsc::channel(CONN_QUEUE);
            tokio::spawn(write_loop(writer, rx));
            send(&inputs, Input::ClientOpened { conn, tx }).await?;
            loop {
                let frame: ClientFrame = frame::read_frame(&mut reader).await?;
                send(&inputs, Input::Client { conn, frame }).await?;
            }
        }
        Role::Peer { id, addr, ip, .. } => {
            send(&inputs, Input::PeerHello { id, addr, ip, conn }).await?;
            loop {
                match frame::read_frame::<_, PeerFrame>(&mut reader).await? {
                    PeerFrame::Paxos(msg) => send(&inputs, Input::Peer { from: id, msg }).await?,
                    other => tracing::debug!("ignoring {other:?} on a peer link"),
                }
            }
        }
        Role::Joiner { .. } => {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(write_loop(writer, rx));
            send(&inputs, Input::JoinerOpened { conn, tx }).await?;
            loop {
                match frame::read_frame::<_, PeerFrame>(&mut reader).await? {
                    PeerFrame::Join { addr } => send(&inputs, Input::Join { conn, addr }).await?,
                    other => tracing::debug!("ignoring {other:?} from a joiner"),
                }
            }
        }
    }
}

async fn send(inputs: &mpsc::Sender<Input>, input: Input) -> Result<(), FrameError> {
    inputs.send(input).await.map_err(|_| FrameError::Closed)
}

/// Writes queued frames, flushing once per burst so pipelined replies share a syscall.
async fn write_loop<T: Serialize>(
    mut writer: frame::FrameWriter<OwnedWriteHalf>,
    mut rx: mpsc::Receiver<T>,
) {
    while let Some(first) = rx.recv().await {
        if frame::feed_frame(&mut writer, &first).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if frame::feed_frame(&mut writer, &more).await.is_err() {
                return;
            }
        }
        if frame::flush(&mut writer).await.is_err() {
            return;
        }
    }
}

/// Binds the listener: an IP is bound as given; a host name (a pod's stable name, say)
/// is advertised but all interfaces are bound.
pub async fn bind(addr: &str, port: u16) -> Result<TcpListener, std::io::Error> {
    let ip = addr
        .parse::<std::net::IpAddr>()
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    TcpListener::bind(SocketAddr::new(ip, port)).await
}
