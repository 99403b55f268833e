//! The sync loop: while this replica leads, keep the hosted zone equal to the zone we serve.
//! Bursts of view changes are coalesced into one batch; throttling and outages are retried
//! with exponential backoff and jitter, while the local nameserver keeps answering.

use super::Route53Settings;
use super::api::{ApiError, Route53};
use super::plan::{self, Change, PlanError};
use crate::dns::leader::Leadership;
use crate::dns::zone::Zone;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Changes arriving within this window go out in one batch.
const COALESCE: Duration = Duration::from_millis(300);
/// Even with no change, the hosted zone is compared this often (someone may have edited it).
const RESYNC: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What one pass did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    InSync,
    Sent(usize),
    DryRun(usize),
}

pub struct Syncer {
    settings: Route53Settings,
    domain: String,
    api: Route53,
    zone: watch::Receiver<Arc<Zone>>,
    leadership: watch::Receiver<Leadership>,
    zone_id: Option<String>,
}

impl Syncer {
    pub fn new(
        settings: Route53Settings,
        domain: String,
        api: Route53,
        zone: watch::Receiver<Arc<Zone>>,
        leadership: watch::Receiver<Leadership>,
    ) -> Syncer {
        Syncer {
            zone_id: settings.zone_id.clone(),
            settings,
            domain,
            api,
            zone,
            leadership,
        }
    }

    /// Runs until the zone publisher stops.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut due = true;
        loop {
            if !self.leadership.borrow_and_update().is_leader {
                // Only the leader writes; a follower waits to become it.
                tokio::select! {
                    r = self.leadership.changed() => if r.is_err() { return },
                    r = self.zone.changed() => if r.is_err() { return },
                }
                due = true;
                continue;
            }
            if !due {
                tokio::select! {
                    r = self.zone.changed() => if r.is_err() { return },
                    r = self.leadership.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(RESYNC) => {}
                }
            }
            // Let a burst of view changes settle, then publish only the latest zone.
            tokio::time::sleep(COALESCE).await;
            let zone = self.zone.borrow_and_update().clone();
            match self.sync_once(&zone).await {
                Ok(outcome) => {
                    tracing::debug!("Route53: {outcome:?} for serial {}", zone.serial());
                    backoff = BACKOFF_MIN;
                    due = false;
                }
                Err(e) => {
                    let transient = matches!(&e, SyncError::Api(a) if a.is_transient());
                    let wait = if transient {
                        jitter(backoff)
                    } else {
                        jitter(BACKOFF_MAX)
                    };
                    tracing::warn!(
                        "Route53 sync of {} failed: {e}; retrying in {} ms (DNS is still served locally)",
                        self.domain,
                        wait.as_millis()
                    );
                    if matches!(&e, SyncError::Api(ApiError::NoZone(_))) {
                        self.zone_id = self.settings.zone_id.clone();
                    }
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    due = true;
                }
            }
        }
    }

    /// One comparison and, when they differ, one change batch.
    pub async fn sync_once(&mut self, zone: &Zone) -> Result<Outcome, SyncError> {
        let zone_id = match &self.zone_id {
            Some(id) => id.clone(),
            None => {
                let id = self.api.find_zone(&self.domain).await?;
                tracing::info!("Route53: hosted zone {id} serves {}", self.domain);
                self.zone_id = Some(id.clone());
                id
            }
        };
        let actual = self.api.list(&zone_id).await?;
        let wanted = plan::wanted(zone);
        let planned = plan::plan(&self.domain, &self.settings.owner, &wanted, &actual)?;
        for (name, rtype) in &planned.conflicts {
            tracing::warn!("Route53: {name} {rtype} exists and is not ours; left alone");
        }
        if planned.changes.is_empty() {
            return Ok(Outcome::InSync);
        }
        let n = planned.changes.len();
        if self.settings.dry_run {
            tracing::info!(
                "Route53 dry run: would send {n} changes to zone {zone_id}:\n{}",
                describe(&planned.changes)
            );
            return Ok(Outcome::DryRun(n));
        }
        let comment = format!("concoord: serial {}", zone.serial());
        self.api.apply(&zone_id, &planned.changes, &comment).await?;
        tracing::info!(
            "Route53: sent {n} changes to zone {zone_id}:\n{}",
            describe(&planned.changes)
        );
        Ok(Outcome::Sent(n))
    }
}

/// One line per change, for the log.
pub fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| {
            format!(
                "  {:?} {} {} ttl={} [{}]",
                c.action,
                c.set.name,
                c.set.rtype,
                c.set.ttl,
                c.set.values.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A random wait between half and all of `d`, so replicas and retries spread out.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    let extra = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(extra)
}
