//! The replica's one port: accepts connections, checks the hello, and turns frames from
//! clients, peers and joiners into inputs for the node loop.
//!
//! Nothing read from a socket can stop the replica: a bad frame closes that connection
//! with a logged reason, and other connections carry on.

use crate::auth::{AuthFile, Identity, Role as AccessRole};
use crate::command::ReplicaId;
use crate::net::frame::{self, FrameError, FrameReader, FrameWriter};
use crate::net::secure::{self, PeerCertificate, ReadHalf, ReplicaTls, WriteHalf};
use crate::net::wire::{
    ClientFrame, Hello, MAGIC, PROTOCOL_VERSION, PeerFrame, ReplicaFrame, Role, Welcome,
};
use crate::node::ConnId;
use crate::paxos::Message;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Frames queued for one client before the client is considered too slow and dropped.
const CONN_QUEUE: usize = 8192;

/// What connections tell the node loop.
pub enum Input {
    ClientOpened {
        conn: ConnId,
        tx: mpsc::Sender<ReplicaFrame>,
        /// Who the client proved to be; its role is looked up on every request.
        who: Identity,
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

pub async fn accept_loop(
    listener: TcpListener,
    inputs: mpsc::Sender<Input>,
    me: IdentityWatch,
    tls: Option<Arc<ReplicaTls>>,
    auth: Option<Arc<AuthFile>>,
) {
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
        let tls = tls.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            let served = match secure_or_plain(stream, tls.as_deref()).await {
                Ok(link) => serve(link, conn, inputs.clone(), me, group, auth.as_deref()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                match e {
                    FrameError::Closed => tracing::debug!(%peer, "connection closed"),
                    e => tracing::info!(%peer, "closing connection: {e}"),
                }
            }
            let _ = inputs.send(Input::Closed { conn }).await;
        });
    }
}

/// An accepted connection, ready for frames.
struct Link {
    reader: FrameReader<ReadHalf>,
    writer: FrameWriter<WriteHalf>,
    /// TLS is on, so peers must show a replica certificate from the group's CA.
    tls: bool,
    /// The certificate the other side showed, if any.
    certificate: Option<PeerCertificate>,
}

/// Performs the TLS handshake when the replica serves TLS, and tells a client that speaks
/// the other language so, rather than leaving it hanging.
async fn secure_or_plain(stream: TcpStream, tls: Option<&ReplicaTls>) -> Result<Link, FrameError> {
    let speaks_tls = tokio::time::timeout(frame::HANDSHAKE_TIMEOUT, secure::speaks_tls(&stream))
        .await
        .map_err(|_| FrameError::Timeout)?
        .map_err(|_| FrameError::Closed)?
        .ok_or(FrameError::Closed)?;
    match (tls, speaks_tls) {
        (None, false) => {
            let (r, w) = secure::tcp_halves(stream);
            Ok(Link {
                reader: frame::reader(r),
                writer: frame::writer(w),
                tls: false,
                certificate: None,
            })
        }
        (None, true) => Err(FrameError::Handshake(
            "it started a TLS handshake, but this replica serves plaintext (started without --tls-cert/--tls-key/--tls-ca)".into(),
        )),
        (Some(_), false) => {
            let reason = "this replica serves TLS only: connect with --ca (the group's CA certificate)";
            let (_, w) = secure::tcp_halves(stream);
            tell_refused(&mut frame::writer(w), reason).await;
            Err(FrameError::Handshake(format!(
                "it spoke plaintext to a TLS port; told it: {reason}"
            )))
        }
        (Some(tls), true) => {
            let accepted = tls
                .accept(stream)
                .await
                .map_err(|e| FrameError::Handshake(e.to_string()))?;
            let (r, w) = secure::halves(accepted.stream);
            Ok(Link {
                reader: frame::reader(r),
                writer: frame::writer(w),
                tls: true,
                certificate: accepted.certificate,
            })
        }
    }
}

/// Tells the other side why it is refused, as far as it still listens.
async fn tell_refused(writer: &mut FrameWriter<WriteHalf>, reason: &str) {
    let refused = Welcome::Refused {
        reason: reason.to_string(),
    };
    let _ = frame::write_frame(writer, &refused).await;
}

/// Refuses the hello: tells why, and ends the connection with that reason.
async fn refuse(writer: &mut FrameWriter<WriteHalf>, reason: String) -> Result<(), FrameError> {
    tell_refused(writer, &reason).await;
    Err(FrameError::Handshake(reason))
}

async fn serve(
    link: Link,
    conn: ConnId,
    inputs: mpsc::Sender<Input>,
    me: ReplicaId,
    my_group: u64,
    auth: Option<&AuthFile>,
) -> Result<(), FrameError> {
    let Link {
        mut reader,
        mut writer,
        tls,
        certificate,
    } = link;
    let hello: Hello = frame::read_frame_within(&mut reader, frame::HANDSHAKE_TIMEOUT).await?;
    if let Role::Peer { group, id, .. } = &hello.role
        && *group != 0
        && my_group != 0
        && *group != my_group
    {
        let reason = format!(
            "replica {id} belongs to group {group:x}, this replica to group {my_group:x}; a replica that lost its disk must rejoin with -b"
        );
        return refuse(&mut writer, reason).await;
    }
    if hello.magic != MAGIC || hello.version != PROTOCOL_VERSION {
        let reason = format!(
            "unsupported protocol {:?} version {} (this replica speaks {MAGIC:?} version {PROTOCOL_VERSION})",
            hello.magic, hello.version
        );
        return refuse(&mut writer, reason).await;
    }
    let who = match &hello.role {
        Role::Client => match auth {
            None => Identity::Anyone,
            Some(auth) => {
                let name = certificate.as_ref().and_then(|c| c.name.as_deref());
                match auth.policy().authenticate(hello.token.as_ref(), name) {
                    Ok(who) => who,
                    Err(reason) => {
                        tracing::info!("refused a client: {reason}");
                        return refuse(&mut writer, reason).await;
                    }
                }
            }
        },
        _ => {
            if let Err(reason) = admit_replica(tls, certificate.as_ref(), &hello, auth) {
                tracing::warn!("refused a peer or joiner: {reason}");
                return refuse(&mut writer, reason).await;
            }
            Identity::Anyone
        }
    };
    let welcome = Welcome::Accepted {
        version: PROTOCOL_VERSION,
        replica: me,
    };
    frame::write_frame(&mut writer, &welcome).await?;
    match hello.role {
        Role::Client => {
            let (tx, rx) = mpsc::channel(CONN_QUEUE);
            tokio::spawn(write_loop(writer, rx));
            send(
                &inputs,
                Input::ClientOpened {
                    conn,
                    tx,
                    who: who.clone(),
                },
            )
            .await?;
            loop {
                let frame: ClientFrame = frame::read_frame(&mut reader).await?;
                // An identity taken out of the auth file loses its open connections too; its
                // next hello is refused with the reason.
                if let Some(auth) = auth
                    && auth.policy().role_of(&who).is_none()
                {
                    return Err(FrameError::Handshake(format!(
                        "{who} is no longer in the auth file: connection closed"
                    )));
                }
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

/// Whether a `Peer` or `Joiner` hello may link: with TLS it must show a replica certificate
/// from the group's CA (not a client's); without TLS but with an auth file, an admin token.
fn admit_replica(
    tls: bool,
    certificate: Option<&PeerCertificate>,
    hello: &Hello,
    auth: Option<&AuthFile>,
) -> Result<(), String> {
    if tls {
        return match certificate {
            Some(c) if c.replica => Ok(()),
            Some(c) => Err(format!(
                "certificate '{}' is a client's: a replica links or joins with a replica certificate from the group's CA (concoord certs issue --host)",
                c.name.as_deref().unwrap_or("")
            )),
            None => Err(
                "a replica must show a certificate from the group's CA (--tls-cert) to link or join"
                    .into(),
            ),
        };
    }
    let Some(auth) = auth else {
        return Ok(());
    };
    let policy = auth.policy();
    let role = policy
        .authenticate(hello.token.as_ref(), None)
        .ok()
        .and_then(|who| policy.role_of(&who));
    match role {
        Some(AccessRole::Admin) => Ok(()),
        _ => Err(
            "a replica must present an admin token (--token) to link to or join a group with an auth file"
                .into(),
        ),
    }
}

async fn send(inputs: &mpsc::Sender<Input>, input: Input) -> Result<(), FrameError> {
    inputs.send(input).await.map_err(|_| FrameError::Closed)
}

/// Writes queued frames, flushing once per burst so pipelined replies share a syscall.
async fn write_loop<T: Serialize>(mut writer: FrameWriter<WriteHalf>, mut rx: mpsc::Receiver<T>) {
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
