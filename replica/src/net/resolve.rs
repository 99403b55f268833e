//! Host names to addresses without depending on the C library's resolver.
//!
//! The container image holds one statically linked binary and nothing else, so glibc's
//! NSS modules (and whatever /etc/nsswitch.conf would name) are not there. Names are
//! therefore looked up by hickory-resolver, which reads /etc/hosts and /etc/resolv.conf
//! itself: inside a docker network that finds the other containers through docker's
//! embedded DNS, inside a pod the cluster DNS with its search domains. When hickory finds
//! nothing (no resolv.conf, or a name only another NSS source knows, such as mDNS or
//! LDAP on a workstation) the system resolver gets the last word.

use hickory_resolver::config::ResolverOpts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// One DNS question may take this long (per attempt).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0:?} is not HOST:PORT")]
    BadAddress(String),
    #[error("cannot resolve {host:?}: {reason}")]
    NotFound { host: String, reason: String },
}

/// Splits `host:port` / `[v6]:port` into host and port.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), ResolveError> {
    let bad = || ResolveError::BadAddress(addr.to_string());
    let (host, port) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// The addresses of `host` (an IP is returned as it is).
pub async fn lookup_ips(host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let hickory = match system_resolver() {
        Ok(resolver) => lookup_with(&resolver, host).await,
        Err(reason) => Err(ResolveError::NotFound {
            host: host.to_string(),
            reason,
        }),
    };
    match hickory {
        Ok(ips) => Ok(ips),
        Err(first) => match tokio::net::lookup_host((host, 0)).await {
            Ok(addrs) => {
                let ips = sorted(addrs.map(|a| a.ip()).collect());
                if ips.is_empty() { Err(first) } else { Ok(ips) }
            }
            // The resolver's reason is the more telling one (the system's is usually a
            // bare "failed to lookup address information").
            Err(_) => Err(first),
        },
    }
}

/// The socket addresses of `host:port`.
pub async fn lookup(addr: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    let (host, port) = split_host_port(addr)?;
    let ips = lookup_ips(host).await?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// Connects to `host:port`, trying each of its addresses in turn. Resolution errors come
/// back as `io::ErrorKind::NotFound` / `InvalidInput` with the resolver's reason.
pub async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let addrs = lookup(addr).await.map_err(|e| {
        let kind = match e {
            ResolveError::BadAddress(_) => std::io::ErrorKind::InvalidInput,
            ResolveError::NotFound { .. } => std::io::ErrorKind::NotFound,
        };
        std::io::Error::new(kind, e.to_string())
    })?;
    let mut last = None;
    for sa in addrs {
        match TcpStream::connect(sa).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{addr} has no address"),
        )
    }))
}

/// A resolver from /etc/resolv.conf and /etc/hosts, read afresh each time: lookups are
/// rare (connection attempts), and a container's files may change under it.
fn system_resolver() -> Result<TokioResolver, String> {
    let mut builder =
        Resolver::builder(TokioRuntimeProvider::default()).map_err(|e| e.to_string())?;
    tune(builder.options_mut());
    builder.build().map_err(|e| e.to_string())
}

fn tune(opts: &mut ResolverOpts) {
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 2;
    // Members move (a restarted container gets a new IP): never answer from a cache.
    opts.cache_size = 0;
}

async fn lookup_with(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let found = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| ResolveError::NotFound {
            host: host.to_string(),
            reason: e.to_string(),
        })?;
    let ips = sorted(found.iter().collect());
    if ips.is_empty() {
        return Err(ResolveError::NotFound {
            host: host.to_string(),
            reason: "no addresses".into(),
        });
    }
    Ok(ips)
}

fn sorted(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort();
    ips.dedup();
    ips
}

/// A resolver that knows only the given hosts-file text and asks no server (tests).
#[cfg(test)]
fn hosts_only(hosts_file: &str) -> TokioResolver {
    use hickory_resolver::Hosts;
    use hickory_resolver::config::ResolverConfig;
    use std::sync::Arc;
    let mut hosts = Hosts::default();
    let _ = hosts.read_hosts_conf(hosts_file.as_bytes());
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], vec![]),
        TokioRuntimeProvider::default(),
    );
    tune(builder.options_mut());
    let mut resolver = builder.build().expect("a resolver without servers builds");
    resolver.set_hosts(Arc::new(hosts));
    resolver
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_HOSTS: &str = "\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
# a comment
172.18.0.3\tcc-r1 cc-r1.example
172.18.0.4 cc-r2
";

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(split_host_port("cc-r1:14000").unwrap(), ("cc-r1", 14000));
        assert_eq!(split_host_port("[::1]:5").unwrap(), ("::1", 5));
        assert_eq!(split_host_port("10.0.0.1:1").unwrap(), ("10.0.0.1", 1));
        assert!(split_host_port("cc-r1").is_err());
        assert!(split_host_port(":14000").is_err());
        assert!(split_host_port("cc-r1:x").is_err());
    }

    #[tokio::test]
    async fn names_come_from_hosts_file_entries() {
        let resolver = hosts_only(DOCKER_HOSTS);
        let ips = lookup_with(&resolver, "cc-r1").await.unwrap();
        assert_eq!(ips, vec!["172.18.0.3".parse::<IpAddr>().unwrap()]);
        let ips = lookup_with(&resolver, "cc-r1.example").await.unwrap();
        assert_eq!(ips, vec!["172.18.0.3".parse::<IpAddr>().unwrap()]);
        let ips = lookup_with(&resolver, "cc-r2").await.unwrap();
        assert_eq!(ips, vec!["172.18.0.4".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn an_unknown_name_says_which() {
        let resolver = hosts_only(DOCKER_HOSTS);
        let e = lookup_with(&resolver, "cc-r9").await.unwrap_err();
        assert!(e.to_string().contains("\"cc-r9\""), "{e}");
    }

    #[tokio::test]
    async fn ips_need_no_lookup_and_localhost_resolves() {
        let addrs = lookup("10.1.2.3:14000").await.unwrap();
        assert_eq!(addrs, vec!["10.1.2.3:14000".parse::<SocketAddr>().unwrap()]);
        let addrs = lookup("[::1]:7").await.unwrap();
        assert_eq!(addrs, vec!["[::1]:7".parse::<SocketAddr>().unwrap()]);
        let addrs = lookup("localhost:14000").await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
    }

    #[tokio::test]
    async fn connect_reaches_a_listener_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        let stream = connect(&format!("localhost:{port}")).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        accept.await.unwrap().unwrap();
    }
}
