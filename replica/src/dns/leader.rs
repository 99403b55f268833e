//! Who leads, as this replica sees it: asked of the replica itself through its client port
//! (a status query), a few times a second. The zone marks the leader, and only the leader
//! writes to Route53.

use crate::client::fetch_status;
use crate::command::ReplicaId;
use std::time::Duration;
use tokio::sync::watch;

/// How often the replica is asked; leadership changes show in the zone within this.
pub const POLL: Duration = Duration::from_millis(250);

/// The leadership facts the nameserver uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<ReplicaId>,
    /// Ballot round of the leader's term.
    pub round: u64,
    /// This replica leads.
    pub is_leader: bool,
}

/// Asks the replica at `addr` every [`POLL`] and publishes changes, until every receiver
/// is gone.
pub async fn watch_leadership(addr: String, tx: watch::Sender<Leadership>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        match fetch_status(&addr, POLL * 4).await {
            Ok(s) => {
                let now = Leadership {
                    leader: s.leader,
                    round: s.ballot.0,
                    is_leader: s.is_leader,
                };
                tx.send_if_modified(|old| {
                    let changed = *old != now;
                    *old = now;
                    changed
                });
            }
            Err(e) => tracing::debug!("DNS: status of {addr}: {e}"),
        }
    }
}
