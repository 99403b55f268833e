//! The IP addresses behind the members' `host:port`: an IP is used as it is, a host name is
//! resolved by `net::resolve` (and remembered for a while, so a view change does not
//! wait for it), and this replica's own record may be overridden (`--advertise-ip`: a pod's
//! current IP behind its stable name).

use super::zone::host_of;
use crate::command::{ReplicaId, View};
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
    cache: HashMap<String, (Instant, Vec<IpAddr>)>,
}

impl AddressBook {
    /// `own`: this replica's id and the IP to publish for it, when overridden.
    pub fn new(own: Option<(ReplicaId, IpAddr)>) -> AddressBook {
        AddressBook {
            own,
            cache: HashMap::new(),
        }
    }

    /// The addresses of every member of `view`.
    pub async fn resolve(&mut self, view: &View) -> BTreeMap<ReplicaId, Vec<IpAddr>> {
        let mut out = BTreeMap::new();
        for (&id, addr) in &view.members {
            let ips = match self.own {
                Some((own, ip)) if own == id => vec![ip],
                _ => self.lookup(host_of(addr)).await,
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
        self.cache.values().any(|(at, _)| at.elapsed() >= FRESH_FOR)
    }

    async fn lookup(&mut self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        if let Some((at, ips)) = self.cache.get(host)
            && at.elapsed() < FRESH_FOR
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
            .insert(host.to_string(), (Instant::now(), ips.clone()));
        ips
    }

    /// What a host resolved to before a failed lookup (better stale than nothing).
    fn previous(&self, host: &str) -> Vec<IpAddr> {
        self.cache
            .get(host)
            .map(|(_, ips)| ips.clone())
            .unwrap_or_default()
    }
}
