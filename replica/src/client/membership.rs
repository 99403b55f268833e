//! Membership changes for administrators and the operator: add or remove one replica,
//! going to the leader and waiting until the change is decided.

use super::addr::resolve_addrs;
use super::conn::{open, reason};
use super::{ClientError, Credentials};
use crate::command::View;
use crate::net::frame;
use crate::net::wire::{ClientFrame, MembershipChange, MembershipReply, ReplicaFrame};
use std::time::{Duration, Instant};

/// Adds a replica that will listen at `replica` ("host:port"); done when the change is
/// decided. Adding an address that is already a member changes nothing.
pub async fn add_member(addrs: &str, replica: &str, limit: Duration) -> Result<View, ClientError> {
    add_member_over(addrs, replica, limit, Credentials::default()).await
}

/// [`add_member`] with TLS and a token, as `creds` say.
pub async fn add_member_over(
    addrs: &str,
    replica: &str,
    limit: Duration,
    creds: impl Into<Credentials>,
) -> Result<View, ClientError> {
    super::addr::check_addr(replica)?;
    change(
        addrs,
        MembershipChange::Add {
            addr: replica.to_string(),
        },
        limit,
        creds.into(),
    )
    .await
}

/// Removes a member, named by id ("3") or address ("host:port"). Removing the leader makes
/// it hand leadership over first; this call follows it to the new leader.
pub async fn remove_member(
    addrs: &str,
    replica: &str,
    limit: Duration,
) -> Result<View, ClientError> {
    remove_member_over(addrs, replica, limit, Credentials::default()).await
}

/// [`remove_member`] with TLS and a token, as `creds` say.
pub async fn remove_member_over(
    addrs: &str,
    replica: &str,
    limit: Duration,
    creds: impl Into<Credentials>,
) -> Result<View, ClientError> {
    change(
        addrs,
        MembershipChange::Remove {
            replica: replica.to_string(),
        },
        limit,
        creds.into(),
    )
    .await
}

async fn change(
    addrs: &str,
    change: MembershipChange,
    limit: Duration,
    creds: Credentials,
) -> Result<View, ClientError> {
    let seeds = resolve_addrs(addrs).await?;
    let deadline = Instant::now() + limit;
    let mut next = 0usize;
    let Some(first) = seeds.first() else {
        return Err(ClientError::InvalidAddress("empty address list".into()));
    };
    let mut target = first.clone();
    let mut tried = Vec::new();
    let mut last_error = String::from("no replica answered");
    while Instant::now() < deadline {
        if !tried.contains(&target) {
            tried.push(target.clone());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match ask(&target, &change, left, &creds).await {
            Ok(MembershipReply::Done { view }) => return Ok(view),
            Ok(MembershipReply::NotLeader {
                leader: Some(leader),
            }) => {
                last_error = format!("{target} redirected to {leader}");
                target = leader;
                // A hand-over is under way: give the successor a moment to win.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Ok(MembershipReply::NotLeader { leader: None }) => {
                last_error = format!("{target} knows no leader yet");
            }
            Ok(MembershipReply::Refused { reason }) if reason.contains("in progress") => {
                last_error = reason;
            }
            Ok(MembershipReply::Refused { reason }) => {
                return Err(match reason.strip_prefix("PermissionError: ") {
                    Some(message) => ClientError::remote("PermissionError", message),
                    None => ClientError::remote("MembershipError", reason),
                });
            }
            Err(e) => last_error = reason(&e),
        }
        next = (next + 1) % seeds.len();
        target = seeds.get(next).cloned().unwrap_or_else(|| first.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ClientError::NoReplica { tried, last_error })
}

async fn ask(
    addr: &str,
    change: &MembershipChange,
    limit: Duration,
    creds: &Credentials,
) -> Result<MembershipReply, ClientError> {
    let work = async {
        let mut conn = open(addr, limit, creds).await?;
        frame::write_frame(&mut conn.writer, &ClientFrame::Membership(change.clone()))
            .await
            .map_err(|e| ClientError::Protocol(format!("{addr}: {e}")))?;
        loop {
            match frame::read_frame::<_, ReplicaFrame>(&mut conn.reader).await {
                Ok(ReplicaFrame::Membership(reply)) => return Ok(reply),
                Ok(_) => continue,
                Err(e) => return Err(ClientError::Protocol(format!("{addr}: {e}"))),
            }
        }
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}
