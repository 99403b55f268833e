//! The nameserver (`-n DOMAIN`): an authoritative zone built from the Paxos view, served
//! over UDP and TCP with hickory-server, optionally mirrored into Route53 (`-r`); and SRV
//! discovery for clients and joining replicas.
//!
//! view (watch) ─┐
//! leadership ───┴─> publisher ──(zone watch)──> handler (UDP/TCP)
//!                                          └──> route53 sync (leader only)

pub mod addresses;
pub mod answer;
pub mod answer_cache;
pub mod discover;
pub mod handler;
pub mod leader;
pub mod publisher;
pub mod route53;
pub mod server;
pub mod udp;
pub mod zone;

#[cfg(test)]
mod tests;

use route53::Route53Settings;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("bad DNS name {0}")]
    Name(String),
    #[error("cannot listen for DNS on {addr}: {source}{hint}", hint = bind_hint(source))]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the DNS server stopped: {0}")]
    Serve(String),
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (ports below 1024 need root or CAP_NET_BIND_SERVICE; try --dns-port 5353)"
    } else {
        ""
    }
}

/// What `-n`, `--dns-*` and `-r` ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// `-n`: the domain served (e.g. `counterdomain.com`).
    pub domain: String,
    /// `--dns-addr` / `--dns-port`: where to answer.
    pub listen: SocketAddr,
    /// `-r`: also keep a Route53 hosted zone in step.
    pub route53: Option<Route53Settings>,
}

/// The default DNS port; a non-root process picks a high one with `--dns-port`.
pub const DEFAULT_PORT: u16 = 53;

/// A nameserver running beside a replica.
pub struct Nameserver {
    /// Where it answers.
    pub addr: SocketAddr,
    /// The zone it serves now.
    pub zone: watch::Receiver<Arc<zone::Zone>>,
    pub task: tokio::task::JoinHandle<Result<(), DnsError>>,
}

/// Binds the nameserver's sockets (before the replica starts, so a taken port fails early).
pub async fn bind(settings: &DnsSettings) -> Result<server::Sockets, DnsError> {
    zone::parse_domain(&settings.domain)?;
    server::bind(settings.listen).await
}

/// Starts serving `settings.domain` on `sockets` for `replica`, from its view, its
/// leadership, what it knows of the other members' links (the IPs they announce) and its
/// own `--advertise-ip`. Returns once the first zone is built.
pub async fn start(
    settings: &DnsSettings,
    sockets: server::Sockets,
    replica: &crate::runtime::Running,
) -> Result<Nameserver, DnsError> {
    let domain = zone::parse_domain(&settings.domain)?;
    let book = addresses::AddressBook::new(replica.advertise_ip.map(|ip| (replica.id, ip)));
    let leadership = replica.leadership.clone();
    let (publisher, zone) = publisher::Publisher::start(
        domain.clone(),
        book,
        replica.view.clone(),
        leadership.clone(),
        replica.presence.clone(),
    )
    .await?;
    let listening = sockets.serve(zone.clone());
    let addr = listening.addr;
    tokio::spawn(publisher.run());
    if let Some(r53) = &settings.route53 {
        route53::start(r53.clone(), domain.to_ascii(), zone.clone(), leadership).await;
    }
    tracing::info!("DNS: serving {domain} on {addr} (UDP and TCP)");
    Ok(Nameserver {
        addr,
        zone,
        task: tokio::spawn(listening.run()),
    })
}
