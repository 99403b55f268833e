//! `-r`: mirror the zone into an Amazon Route53 hosted zone. One writer (the leader), one
//! change batch per difference, only records we own (see [`plan`]).

pub mod api;
pub mod credentials;
pub mod plan;
pub mod sync;

use super::leader::Leadership;
use super::zone::Zone;
use std::sync::Arc;
use tokio::sync::watch;

/// The owner name written into the ownership record unless told otherwise.
pub const DEFAULT_OWNER: &str = "concoord";

/// How `-r` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route53Settings {
    /// `--route53-zone-id`; none looks the zone up by the domain name.
    pub zone_id: Option<String>,
    /// `--route53-dry-run`: log the batch instead of sending it.
    pub dry_run: bool,
    /// Whose records these are (the ownership record's owner).
    pub owner: String,
}

impl Default for Route53Settings {
    fn default() -> Route53Settings {
        Route53Settings {
            zone_id: None,
            dry_run: false,
            owner: DEFAULT_OWNER.to_string(),
        }
    }
}

/// Starts the sync task for `domain`.
pub async fn start(
    settings: Route53Settings,
    domain: String,
    zone: watch::Receiver<Arc<Zone>>,
    leadership: watch::Receiver<Leadership>,
) -> tokio::task::JoinHandle<()> {
    let stored = crate::aws::stored_credentials();
    let api = api::Route53::connect(stored, None).await;
    let syncer = sync::Syncer::new(settings, domain, api, zone, leadership);
    tokio::spawn(syncer.run())
}
