//! Finding a group by its domain: `_concoord._tcp.<domain>` SRV through hickory-resolver,
//! ordered by priority (the leader first), each target turned into `ip:port`.
//!
//! Questions go to the system's resolver, or to one server given with `--dns-server
//! HOST:PORT` / `CONCOORD_DNS_SERVER` (tests, and clusters whose domain is not delegated).

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable naming the DNS server to ask instead of the system's.
pub const DNS_SERVER_ENV: &str = "CONCOORD_DNS_SERVER";

static SERVER: OnceLock<SocketAddr> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{0:?} is not a domain name: {1}")]
    BadDomain(String, String),
    #[error("DNS server {0:?}: expected IP:PORT or HOST:PORT")]
    BadServer(String),
    #[error("no resolver: {0}")]
    Resolver(String),
    #[error("SRV lookup of {name} failed: {reason}")]
    Lookup { name: String, reason: String },
    #[error("{0} has no SRV records with reachable addresses")]
    Empty(String),
}

/// Makes every later lookup in this process ask `server` (the `--dns-server` flag).
pub fn use_server(server: SocketAddr) {
    let _ = SERVER.set(server);
}

/// Parses `IP:PORT`, or resolves `HOST:PORT` with the system resolver.
pub async fn parse_server(text: &str) -> Result<SocketAddr, DiscoverError> {
    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
        return Ok(addr);
    }
    crate::net::resolve::lookup(text.trim())
        .await
        .ok()
        .and_then(|addrs| addrs.into_iter().next())
        .ok_or_else(|| DiscoverError::BadServer(text.to_string()))
}

/// The server lookups go to: the explicit one, the `--dns-server` flag, the environment, or
/// none (the system resolver).
async fn server_for(explicit: Option<&str>) -> Result<Option<SocketAddr>, DiscoverError> {
    if let Some(s) = explicit {
        return parse_server(s).await.map(Some);
    }
    if let Some(s) = SERVER.get() {
        return Ok(Some(*s));
    }
    match std::env::var(DNS_SERVER_ENV) {
        Ok(s) if !s.trim().is_empty() => parse_server(&s).await.map(Some),
        _ => Ok(None),
    }
}

fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, DiscoverError> {
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder(TokioRuntimeProvider::default())
            .map_err(|e| DiscoverError::Resolver(e.to_string()))?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    // Membership changes: never answer from a stale cache.
    opts.cache_size = 0;
    builder
        .build()
        .map_err(|e| DiscoverError::Resolver(e.to_string()))
}

/// The members of the group at `domain`, as `ip:port`, leader (lowest priority) first.
pub async fn members(domain: &str, server: Option<&str>) -> Result<Vec<String>, DiscoverError> {
    Ok(members_named(domain, server)
        .await?
        .into_iter()
        .map(|(addr, _)| addr)
        .collect())
}

/// [`members`], each with the SRV target name it was published under (`r1.DOMAIN`): a
/// client dials the IP (its nameserver may be the only one that knows the name) and checks
/// a TLS certificate for the name.
pub async fn members_named(
    domain: &str,
    server: Option<&str>,
) -> Result<Vec<(String, String)>, DiscoverError> {
    let mut origin = Name::from_ascii(domain.trim())
        .map_err(|e| DiscoverError::BadDomain(domain.to_string(), e.to_string()))?;
    origin.set_fqdn(true);
    let name = Name::from_labels(super::zone::SRV_LABELS)
        .and_then(|n| n.append_domain(&origin))
        .map_err(|e| DiscoverError::BadDomain(domain.to_string(), e.to_string()))?;
    let resolver = resolver(server_for(server).await?)?;
    let lookup = resolver
        .lookup(name.clone(), RecordType::SRV)
        .await
        .map_err(|e| DiscoverError::Lookup {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    let mut targets: Vec<(u16, std::cmp::Reverse<u16>, Name, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((
                s.priority,
                std::cmp::Reverse(s.weight),
                s.target.clone(),
                s.port,
            )),
            _ => None,
        })
        .collect();
    targets.sort();
    let mut out = Vec::new();
    for (_, _, target, port) in targets {
        // The additional section usually has the address; otherwise ask for it.
        let mut ips: Vec<IpAddr> = lookup
            .additionals()
            .iter()
            .filter(|r| r.name == target)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if ips.is_empty() {
            match resolver.lookup_ip(target.clone()).await {
                Ok(found) => ips.extend(found.iter()),
                Err(e) => tracing::debug!("no address for SRV target {target}: {e}"),
            }
        }
        let published = target.to_ascii().trim_end_matches('.').to_string();
        for ip in ips {
            let addr = SocketAddr::new(ip, port).to_string();
            if !out.iter().any(|(a, _)| *a == addr) {
                out.push((addr, published.clone()));
            }
        }
    }
    if out.is_empty() {
        return Err(DiscoverError::Empty(name.to_string()));
    }
    Ok(out)
}

/// True when `text` names a domain (`counterdomain.com`: dotted, no port) rather than a
/// `host:port` list.
pub fn is_domain(text: &str) -> bool {
    let t = text.trim();
    t.trim_end_matches('.').contains('.')
        && !t.contains(':')
        && !t.contains(',')
        && t.parse::<IpAddr>().is_err()
        && Name::from_ascii(t).is_ok()
}
