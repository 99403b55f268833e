//! Keeps the served zone in step with the replica: rebuilds it when the view or the leader
//! changes (and when member host names are due for another lookup), and publishes it only
//! when a record changed.

use super::DnsError;
use super::addresses::AddressBook;
use super::leader::Leadership;
use super::zone::{Zone, ZoneInput};
use crate::command::View;
use crate::runtime::Presence;
use hickory_proto::rr::Name;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often host names in the view are looked up again.
const REFRESH: Duration = Duration::from_secs(10);

/// Builds zones for one domain.
pub struct Publisher {
    domain: Name,
    addresses: AddressBook,
    view: watch::Receiver<View>,
    leadership: watch::Receiver<Leadership>,
    presence: watch::Receiver<Presence>,
    zone: watch::Sender<Arc<Zone>>,
}

impl Publisher {
    /// Builds the first zone now; the receiver always holds the current zone.
    pub async fn start(
        domain: Name,
        mut addresses: AddressBook,
        view: watch::Receiver<View>,
        leadership: watch::Receiver<Leadership>,
        presence: watch::Receiver<Presence>,
    ) -> Result<(Publisher, watch::Receiver<Arc<Zone>>), DnsError> {
        // Copy both out first: a watch `Ref` held across the lookups' `.await` blocks the
        // node loop's next `send` on a worker thread, which can stall the whole runtime
        // (seen: a founder that never answered a handshake).
        let current_view = view.borrow().clone();
        let current_leadership = *leadership.borrow();
        let current_presence = presence.borrow().clone();
        let input = input_of(
            &current_view,
            &current_leadership,
            &current_presence,
            &mut addresses,
        )
        .await;
        let first = Zone::build(&domain, &input)?;
        let (zone, rx) = watch::channel(Arc::new(first));
        Ok((
            Publisher {
                domain,
                addresses,
                view,
                leadership,
                presence,
                zone,
            },
            rx,
        ))
    }

    /// Rebuilds on every change until the replica's view channel closes.
    pub async fn run(mut self) {
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without leadership news (its watcher gone) the zone still follows the view.
        let mut leadership_news = true;
        let mut presence_news = true;
        loop {
            tokio::select! {
                changed = self.view.changed() => if changed.is_err() { return },
                changed = self.leadership.changed(), if leadership_news => {
                    leadership_news = changed.is_ok();
                }
                // A member linked again (maybe from a new IP) or went away.
                changed = self.presence.changed(), if presence_news => {
                    presence_news = changed.is_ok();
                }
                _ = refresh.tick() => if !self.addresses.stale() { continue },
            }
            let view = self.view.borrow_and_update().clone();
            let leadership = *self.leadership.borrow_and_update();
            let presence = self.presence.borrow_and_update().clone();
            let input = input_of(&view, &leadership, &presence, &mut self.addresses).await;
            match Zone::build(&self.domain, &input) {
                Ok(zone) => {
                    self.zone.send_if_modified(|current| {
                        let changed =
                            !current.same_records(&zone) || current.serial() != zone.serial();
                        if changed {
                            tracing::info!(
                                "DNS: zone {} serial {} for view {} ({} members)",
                                zone.origin(),
                                zone.serial(),
                                view.number,
                                view.members.len()
                            );
                            *current = Arc::new(zone);
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::warn!("DNS: cannot build the zone for view {}: {e}", view.number)
                }
            }
        }
    }
}

async fn input_of(
    view: &View,
    leadership: &Leadership,
    presence: &Presence,
    addresses: &mut AddressBook,
) -> ZoneInput {
    ZoneInput {
        ips: addresses.resolve(view, presence).await,
        view: view.clone(),
        leader: leadership.leader,
        round: leadership.round,
        withdrawn: leadership.withdrawn,
    }
}
