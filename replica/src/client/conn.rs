//! One TCP connection to one replica: connect, handshake, then a reader and a writer task
//! that report to the driver through events.

use super::{ClientError, Credentials};
use crate::command::ReplicaId;
use crate::net::frame::{self, FrameReader, FrameWriter};
use crate::net::secure::{self, ReadHalf, WriteHalf};
use crate::net::wire::{
    ClientFrame, Hello, PROTOCOL_VERSION, ReplicaFrame, Role, StatusReport, Welcome,
};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// A burst of frames that cannot be written within this long means the peer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many frames are fed before a flush, so one burst cannot hog memory.
const MAX_BURST: usize = 512;

pub(crate) struct Conn {
    pub reader: FrameReader<ReadHalf>,
    pub writer: FrameWriter<WriteHalf>,
    pub replica: ReplicaId,
}

/// Connects to `addr` and performs the client handshake, all within `limit`. Errors are
/// `NoReplica` (unreachable) or `Protocol` (it answered, but not as a replica should). With
/// `tls`, the connection is TLS and the replica's certificate is checked against the CA.
pub(crate) async fn open(
    addr: &str,
    limit: Duration,
    creds: &Credentials,
) -> Result<Conn, ClientError> {
    match tokio::time::timeout(limit, open_inner(addr, creds)).await {
        Ok(result) => result,
        Err(_) => Err(unreachable(addr, format!("no handshake within {limit:?}"))),
    }
}

async fn open_inner(addr: &str, creds: &Credentials) -> Result<Conn, ClientError> {
    let stream = crate::net::resolve::connect(addr)
        .await
        .map_err(|e| unreachable(addr, e.to_string()))?;
    // Requests are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    // A certificate that does not check out will not check out on a retry either.
    let (r, w) = secure::dial(stream, addr, creds.tls.as_ref())
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut reader = frame::reader(r);
    let mut writer = frame::writer(w);
    let hello = Hello::with_token(Role::Client, creds.token.clone());
    frame::write_frame(&mut writer, &hello)
        .await
        .map_err(|e| unreachable(addr, e.to_string()))?;
    let welcome: Welcome = frame::read_frame(&mut reader)
        .await
        .map_err(|e| ClientError::Protocol(format!("{addr}: bad welcome: {e}")))?;
    match welcome {
        Welcome::Accepted { version, replica } if version == PROTOCOL_VERSION => Ok(Conn {
            reader,
            writer,
            replica,
        }),
        Welcome::Accepted { version, .. } => Err(ClientError::Protocol(format!(
            "{addr} speaks protocol version {version}, this client speaks {PROTOCOL_VERSION}"
        ))),
        // No credentials, or the wrong ones: as a call refused for its role would be.
        Welcome::Refused { reason } => match reason.strip_prefix("PermissionError: ") {
            Some(message) => Err(ClientError::remote(
                "PermissionError",
                format!("{addr} refused the connection: {message}"),
            )),
            None => Err(ClientError::Protocol(format!(
                "{addr} refused the connection: {reason}"
            ))),
        },
    }
}

fn unreachable(addr: &str, why: String) -> ClientError {
    ClientError::NoReplica {
        tried: vec![addr.to_string()],
        last_error: why,
    }
}

/// The short text of an error for `NoReplica::last_error`.
pub(crate) fn reason(e: &ClientError) -> String {
    match e {
        ClientError::NoReplica { last_error, .. } => last_error.clone(),
        other => other.to_string(),
    }
}

/// Asks one replica for its status, without opening a session.
pub async fn fetch_status(addr: &str, limit: Duration) -> Result<StatusReport, ClientError> {
    fetch_status_with(addr, limit, Credentials::default()).await
}

/// [`fetch_status`] with TLS and a token, as `creds` say.
pub async fn fetch_status_with(
    addr: &str,
    limit: Duration,
    creds: impl Into<Credentials>,
) -> Result<StatusReport, ClientError> {
    super::addr::check_addr(addr)?;
    let creds = creds.into();
    let ask = async {
        let mut conn = open(addr, limit, &creds).await?;
        frame::write_frame(&mut conn.writer, &ClientFrame::Status)
            .await
            .map_err(|e| unreachable(addr, e.to_string()))?;
        loop {
            match frame::read_frame::<_, ReplicaFrame>(&mut conn.reader).await {
                Ok(ReplicaFrame::Status(report)) => return Ok(report),
                Ok(_) => continue,
                Err(frame::FrameError::Closed) => {
                    return Err(unreachable(addr, "connection closed".into()));
                }
                Err(e) => return Err(ClientError::Protocol(format!("{addr}: {e}"))),
            }
        }
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout),
    }
}

/// What a connection tells the driver. `link` names the connection, so news from an
/// abandoned one is ignored.
#[derive(Debug)]
pub(crate) enum Event {
    Connected {
        link: u64,
        replica: ReplicaId,
        tx: mpsc::UnboundedSender<ClientFrame>,
    },
    ConnectFailed {
        link: u64,
        error: ClientError,
    },
    Frame {
        link: u64,
        frame: ReplicaFrame,
    },
    Lost {
        link: u64,
        error: String,
    },
    /// A fresh SRV lookup of the group's domain: its addresses with the names they were
    /// published under, or why it failed.
    Discovered(Result<Vec<(String, String)>, String>),
}

/// Connects, then forwards every frame read to the driver until the connection fails.
/// The driver aborts this task to drop the connection.
pub(crate) async fn run_link(
    link: u64,
    addr: String,
    limit: Duration,
    creds: Credentials,
    events: mpsc::Sender<Event>,
) {
    let conn = match open(&addr, limit, &creds).await {
        Ok(conn) => conn,
        Err(error) => {
            let _ = events.send(Event::ConnectFailed { link, error }).await;
            return;
        }
    };
    let Conn {
        mut reader,
        writer,
        replica,
    } = conn;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(link, writer, rx, events.clone()));
    if events
        .send(Event::Connected { link, replica, tx })
        .await
        .is_err()
    {
        return;
    }
    loop {
        let event = match frame::read_frame::<_, ReplicaFrame>(&mut reader).await {
            Ok(frame) => Event::Frame { link, frame },
            Err(e) => Event::Lost {
                link,
                error: format!("{addr}: {e}"),
            },
        };
        let lost = matches!(event, Event::Lost { .. });
        if events.send(event).await.is_err() || lost {
            return;
        }
    }
}

/// Writes what the driver sends, feeding a burst and flushing it once. Ends when the driver
/// drops its sender (then shuts the write side down) or when writing fails.
async fn write_loop(
    link: u64,
    mut w: FrameWriter<WriteHalf>,
    mut rx: mpsc::UnboundedReceiver<ClientFrame>,
    events: mpsc::Sender<Event>,
) {
    while let Some(first) = rx.recv().await {
        let burst = async {
            frame::feed_frame(&mut w, &first).await?;
            for _ in 1..MAX_BURST {
                match rx.try_recv() {
                    Ok(next) => frame::feed_frame(&mut w, &next).await?,
                    Err(_) => break,
                }
            }
            frame::flush(&mut w).await
        };
        let error = match tokio::time::timeout(WRITE_TIMEOUT, burst).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("write blocked for {WRITE_TIMEOUT:?}"),
        };
        let _ = events.send(Event::Lost { link, error }).await;
        return;
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, w.get_mut().shutdown()).await;
}
