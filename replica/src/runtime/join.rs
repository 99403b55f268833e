//! Joining a running group through any member (`-b HOST:PORT`, a list `-b "HOST:PORT,
//! HOST:PORT"` tried in turn, or `-b DOMAIN`: the members the domain's `_concoord._tcp` SRV
//! records list): ask to be added, follow redirects to the
//! leader, retry while a membership change is in progress, and give up with a clear reason
//! when nobody answers.

use crate::auth::Token;
use crate::command::{ReplicaId, View};
use crate::net::frame::{self, FrameError};
use crate::net::secure::{self, ReplicaTls};
use crate::net::wire::{Hello, PeerFrame, Role, Welcome};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What the group told us when it added us.
pub struct Joined {
    pub id: ReplicaId,
    pub view: View,
    pub genesis: View,
}

enum Attempt {
    Joined(Joined),
    Redirect(Option<String>),
    Retry(String),
}

/// Joins through `bootstrap` as `my_addr`, trying until `deadline` passes.
pub async fn join(
    bootstrap: &str,
    my_addr: &str,
    limit: Duration,
    tls: Option<&ReplicaTls>,
    token: Option<Token>,
) -> Result<Joined, String> {
    let deadline = Instant::now() + limit;
    let mut seeds = Seeds::new(bootstrap);
    let mut target = seeds.next().await;
    let mut backoff = Duration::from_millis(100);
    let mut last_error;
    loop {
        match attempt(&target, my_addr, tls, token.as_ref()).await {
            Ok(Attempt::Joined(j)) => return Ok(j),
            Ok(Attempt::Redirect(Some(leader))) => {
                tracing::info!("{target} does not lead; asking {leader}");
                last_error = format!("{target} redirected to {leader}");
                target = leader;
                continue_after(&mut backoff, Some(Duration::from_millis(20))).await;
            }
            Ok(Attempt::Redirect(None)) => {
                last_error = format!("{target} knows no leader yet");
                target = seeds.next().await;
                continue_after(&mut backoff, None).await;
            }
            Ok(Attempt::Retry(reason)) => {
                last_error = format!("{target}: {reason}");
                continue_after(&mut backoff, None).await;
            }
            Err(e) => {
                last_error = format!("{target}: {e}");
                target = seeds.next().await;
                continue_after(&mut backoff, None).await;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no answer within {}s (last: {last_error})",
                limit.as_secs()
            ));
        }
    }
}

/// The members to ask, in turn: those `-b` named, or those its domain's SRV records list
/// (looked up again after each round, so a changing group is followed).
struct Seeds {
    bootstrap: String,
    queue: Vec<String>,
}

impl Seeds {
    fn new(bootstrap: &str) -> Seeds {
        Seeds {
            bootstrap: bootstrap.to_string(),
            queue: Vec::new(),
        }
    }

    async fn next(&mut self) -> String {
        if !crate::dns::discover::is_domain(&self.bootstrap) {
            if self.queue.is_empty() {
                self.queue = self
                    .bootstrap
                    .rsplit(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect();
            }
            return self.queue.pop().unwrap_or_else(|| self.bootstrap.clone());
        }
        if self.queue.is_empty() {
            match crate::dns::discover::members(&self.bootstrap, None).await {
                Ok(mut found) => {
                    found.reverse();
                    self.queue = found;
                }
                Err(e) => tracing::warn!("-b {}: {e}", self.bootstrap),
            }
        }
        // With nothing found, the attempt on the domain itself fails and is retried.
        self.queue.pop().unwrap_or_else(|| self.bootstrap.clone())
    }
}

/// Sleeps `wait`, or the current backoff (which then doubles) when none is given.
async fn continue_after(backoff: &mut Duration, wait: Option<Duration>) {
    tokio::time::sleep(wait.unwrap_or(*backoff)).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
}

/// Connects to one of the addresses `target` resolves to, skipping this replica's own: a
/// headless Service name (Kubernetes) lists the joiner itself among the members.
async fn connect_to_other(target: &str, my_addr: &str) -> Result<TcpStream, FrameError> {
    let io = FrameError::Io;
    use crate::net::resolve::{ResolveError, lookup};
    let mine: Vec<SocketAddr> = lookup(my_addr).await.unwrap_or_default();
    let others: Vec<SocketAddr> = lookup(target)
        .await
        .map_err(|e| {
            let kind = match e {
                ResolveError::BadAddress(_) => std::io::ErrorKind::InvalidInput,
                ResolveError::NotFound { .. } => std::io::ErrorKind::NotFound,
            };
            io(std::io::Error::new(kind, e.to_string()))
        })?
        .into_iter()
        .filter(|a| !mine.contains(a))
        .collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{target} lists no replica but this one ({my_addr})"),
    );
    for addr in others {
        match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )
            }
        }
    }
    Err(io(last))
}

async fn attempt(
    target: &str,
    my_addr: &str,
    tls: Option<&ReplicaTls>,
    token: Option<&Token>,
) -> Result<Attempt, FrameError> {
    let stream = connect_to_other(target, my_addr).await?;
    let (r, w) = secure::dial(stream, target, tls.map(ReplicaTls::client).as_ref())
        .await
        .map_err(|e| FrameError::Handshake(e.to_string()))?;
    let mut reader = frame::reader(r);
    let mut writer = frame::writer(w);
    let hello = Hello::with_token(
        Role::Joiner {
            addr: my_addr.to_string(),
        },
        token.cloned(),
    );
    frame::write_frame(&mut writer, &hello).await?;
    if let Welcome::Refused { reason } =
        frame::read_frame_within(&mut reader, frame::HANDSHAKE_TIMEOUT).await?
    {
        return Err(FrameError::Handshake(reason));
    }
    frame::write_frame(
        &mut writer,
        &PeerFrame::Join {
            addr: my_addr.to_string(),
        },
    )
    .await?;
    // Adding a member takes one consensus round plus a phase 1; allow for an election.
    let reply: PeerFrame = frame::read_frame_within(&mut reader, Duration::from_secs(10)).await?;
    Ok(match reply {
        PeerFrame::Joined { id, view, genesis } => Attempt::Joined(Joined { id, view, genesis }),
        PeerFrame::JoinRedirect { leader } => Attempt::Redirect(leader),
        PeerFrame::JoinRefused { reason } => Attempt::Retry(reason),
        other => Attempt::Retry(format!("unexpected answer {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_never_dials_itself() {
        // The joiner listens already; its only "other" is itself.
        let me = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let my_addr = me.local_addr().unwrap().to_string();
        let err = connect_to_other(&my_addr, &my_addr).await.unwrap_err();
        assert!(err.to_string().contains("no replica but this one"), "{err}");
        // Another member at the same name but another port is dialled.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = other.local_addr().unwrap();
        let s = connect_to_other(&target.to_string(), &my_addr)
            .await
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), target);
    }
}
