//! `concoord probe ready|live`: Kubernetes exec probes. Live: the replica answers a status
//! request and has not halted. Ready: it is a voting member of the view, knows a leader and
//! is caught up with it (within `MAX_LAG` slots), so a rolling update may move on.

use crate::cli::{CliError, ProbeArgs, ProbeKind};
use crate::client::fetch_status_with;
use crate::net::wire::StatusReport;

/// Decided slots a ready replica may trail its leader by.
pub const MAX_LAG: u64 = 64;

pub async fn run(args: &ProbeArgs) -> Result<(), CliError> {
    let creds = args.creds.load()?;
    let me = fetch_status_with(&args.addr, args.timeout, creds.clone())
        .await
        .map_err(|e| CliError::Failed(format!("not live: {}: {e}", args.addr)))?;
    live(&me).map_err(CliError::Failed)?;
    if args.kind == ProbeKind::Live {
        return Ok(());
    }
    let leader = match leader_address(&me) {
        Some(addr) if !me.is_leader => Some(
            fetch_status_with(addr, args.timeout, creds)
                .await
                .map_err(|e| CliError::Failed(format!("not ready: leader {addr}: {e}")))?,
        ),
        _ => None,
    };
    ready(&me, leader.as_ref()).map_err(CliError::Failed)
}

/// Why a replica that answered is not live.
pub fn live(me: &StatusReport) -> Result<(), String> {
    if me.state.starts_with("halted") {
        return Err(format!("not live: {}", me.state));
    }
    Ok(())
}

/// Why a replica is not ready, given its own report and its leader's (none when it leads).
pub fn ready(me: &StatusReport, leader: Option<&StatusReport>) -> Result<(), String> {
    live(me)?;
    if me.state != "member" || !me.view.contains(me.replica) {
        return Err(format!(
            "not ready: {} (not a voting member of view {})",
            me.state, me.view.number
        ));
    }
    if me.leader.is_none() {
        return Err("not ready: no leader known".into());
    }
    if let Some(l) = leader {
        let behind = l.decided_upto.saturating_sub(me.executed_upto);
        if behind > MAX_LAG {
            return Err(format!(
                "not ready: {behind} slots behind the leader (at most {MAX_LAG})"
            ));
        }
    }
    Ok(())
}

fn leader_address(me: &StatusReport) -> Option<&str> {
    me.view.addr_of(me.leader?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::fake::report;

    #[test]
    fn ready_needs_a_caught_up_voting_member_with_a_leader() {
        let mut me = report(2, &["a:1", "b:1", "c:1"]);
        me.state = "member".into();
        me.leader = Some(1);
        let mut leader = report(1, &["a:1", "b:1", "c:1"]);
        leader.decided_upto = 100;
        me.executed_upto = 90;
        assert_eq!(ready(&me, Some(&leader)), Ok(()));
        me.executed_upto = 10;
        assert!(
            ready(&me, Some(&leader))
                .unwrap_err()
                .contains("90 slots behind")
        );
        me.executed_upto = 100;
        me.leader = None;
        assert!(ready(&me, Some(&leader)).unwrap_err().contains("no leader"));
        me.leader = Some(1);
        me.state = "learner".into();
        assert!(ready(&me, Some(&leader)).unwrap_err().contains("learner"));
        me.state = "halted: disk full".into();
        assert!(live(&me).unwrap_err().contains("disk full"));
        me.state = "removed".into();
        assert_eq!(live(&me), Ok(()));
        assert!(ready(&me, None).is_err());
    }
}
