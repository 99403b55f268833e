//! The IP addresses behind the members' `host:port`: an IP is used as it is, a host name is
//! resolved by `net::resolve` (and remembered for a while, so a view change does not
//! wait for it), and this replica's own record may be overridden (`--advertise-ip`: a pod's
//! current IP behind its stable name).
//!
//! What the members say beats what DNS says: a member that announces its IP on its link to
//! us (`--advertise-ip`) is published at that IP the moment it links again after a restart,
//! and with no address while it has no link (its old IP belongs to nobody any more). A
//! member that announces nothing but linked to us again is looked up afresh, since a
//! restarted container may have a new IP behind the same name.

use super::zone::host_of;
use crate::command::{ReplicaId, View};
use crate::runtime::{PeerPresence, Presence};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a resolved host name is trusted before it is looked up again.
const FRESH_FOR: Duration = Duration::from_secs(30);
/// A lookup that takes longer is given up (the member goes without address records).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Remembers host name lookups between zone builds.
#[derive(Debug, Default)]
pub struct AddressBook {
    own: Option<(ReplicaId, IpAddr)>,
    /// Host name -> when it was looked up, what it gave, and the looked-up member's link
    /// generation then.
    cache: HashMap<String, (Instant, Vec<IpAddr>, u64)>,
}

impl AddressBook {
    /// `own`: this replica's id and the IP to publish for it, when overridden.
    pub fn new(own: Option<(ReplicaId, IpAddr)>) -> AddressBook {
        AddressBook {
            own,
            cache: HashMap::new(),
        }
    }

    /// The addresses of every member of `view`, given what the members' links said.
    pub async fn resolve(
        &mut self,
        view: &View,
        presence: &Presence,
    ) -> BTreeMap<ReplicaId, Vec<IpAddr>> {
        let mut out = BTreeMap::new();
        for (&id, addr) in &view.members {
            let seen = presence.get(&id);
            let ips = match (self.own, seen) {
                (Some((own, ip)), _) if own == id => vec![ip],
                (
                    _,
                    Some(PeerPresence {
                        announced: Some(ip),
                        connected,
                        ..
                    }),
                ) => {
                    // Without a link it is down or moving: its old IP is nobody's now.
                    if *connected { vec![*ip] } else { Vec::new() }
                }
                (_, seen) => {
                    let generation = seen.map_or(0, |p| p.generation);
                    self.lookup(host_of(addr), generation).await
                }
            };
            out.insert(id, ips);
        }
        // Hosts that left the view are forgotten.
        let hosts: Vec<&str> = view.members.values().map(|a| host_of(a)).collect();
        self.cache.retain(|h, _| hosts.contains(&h.as_str()));
        out
    }

    /// True when a cached host name is due for another lookup.
    pub fn stale(&self) -> bool {
        self.cache
            .values()
            .any(|(at, ..)| at.elapsed() >= FRESH_FOR)
    }

    /// `host`'s addresses, from the cache while it is fresh and the member has not linked
    /// to us again since (`generation`).
    async fn lookup(&mut self, host: &str, generation: u64) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        if let Some((at, ips, seen)) = self.cache.get(host)
            && at.elapsed() < FRESH_FOR
            && *seen == generation
        {
            return ips.clone();
        }
        let found =
            tokio::time::timeout(LOOKUP_TIMEOUT, crate::net::resolve::lookup_ips(host)).await;
        let ips = match found {
            Ok(Ok(ips)) => ips,
            Ok(Err(e)) => {
                tracing::warn!("DNS: cannot resolve member host {host}: {e}");
                self.previous(host)
            }
            Err(_) => {
                tracing::warn!("DNS: resolving member host {host} took over {LOOKUP_TIMEOUT:?}");
                self.previous(host)
            }
        };
        self.cache
            .insert(host.to_string(), (Instant::now(), ips.clone(), generation));
        ips
    }

    /// What a host resolved to before a failed lookup (better stale than nothing).
    fn previous(&self, host: &str) -> Vec<IpAddr> {
        self.cache
            .get(host)
            .map(|(_, ips, _)| ips.clone())
            .unwrap_or_default()
    }
}
