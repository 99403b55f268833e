//! Where a client finds the group, in the two forms ConCoord accepts: an address list
//! (`"127.0.0.1:14000, 127.0.0.1:14001"`) or the group's DNS domain (`counterdomain.com`),
//! whose `_concoord._tcp` SRV records list the replicas (see [`crate::dns::discover`]).

use super::ClientError;
use crate::dns::discover;

/// Where a client starts looking for the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seeds {
    Addrs(Vec<String>),
    Domain(String),
}

impl Seeds {
    /// Parses a comma-separated list of `host:port` (also a single one), or a domain.
    pub fn parse(list: &str) -> Result<Seeds, ClientError> {
        if discover::is_domain(list) {
            return Ok(Seeds::Domain(list.trim().to_string()));
        }
        Ok(Seeds::Addrs(parse_addrs(list)?))
    }

    /// The addresses to try: as given, or the domain's SRV targets (leader first).
    pub async fn resolve(&self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .resolve_named()
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    /// [`Seeds::resolve`], with the name each discovered address was published under (TLS
    /// checks it); given addresses have none.
    pub async fn resolve_named(&self) -> Result<Vec<(String, Option<String>)>, ClientError> {
        match self {
            Seeds::Addrs(addrs) => Ok(addrs.iter().map(|a| (a.clone(), None)).collect()),
            Seeds::Domain(domain) => discover::members_named(domain, None)
                .await
                .map(|found| found.into_iter().map(|(a, n)| (a, Some(n))).collect())
                .map_err(|e| ClientError::NoReplica {
                    tried: vec![domain.clone()],
                    last_error: e.to_string(),
                }),
        }
    }
}

/// The addresses of `list` (`"h:p, h:p"` or a domain, looked up through SRV).
pub async fn resolve_addrs(list: &str) -> Result<Vec<String>, ClientError> {
    Seeds::parse(list)?.resolve().await
}

/// Parses `"h:p, h:p"` into its addresses, each checked by [`check_addr`]; duplicates are
/// dropped, order kept.
pub fn parse_addrs(list: &str) -> Result<Vec<String>, ClientError> {
    if list.trim().is_empty() {
        return Err(ClientError::InvalidAddress(
            "empty address list (expected \"host:port, host:port\")".into(),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for part in list.split(',') {
        let addr = part.trim();
        if addr.is_empty() {
            return Err(ClientError::InvalidAddress(format!(
                "empty entry in address list {list:?}"
            )));
        }
        check_addr(addr)?;
        if !out.iter().any(|a| a == addr) {
            out.push(addr.to_string());
        }
    }
    Ok(out)
}

/// Checks one `host:port`: host is an IPv4 address, a host name, or `[IPv6]`; the port is
/// 1..=65535.
pub fn check_addr(addr: &str) -> Result<(), ClientError> {
    let bad = |why: &str| ClientError::InvalidAddress(format!("{addr:?}: {why}"));
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad(
            "expected host:port, or a domain such as counterdomain.com",
        ));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("port must be a number from 1 to 65535")),
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(bad("invalid IPv6 address")),
        };
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    if host_ok {
        Ok(())
    } else {
        Err(bad("invalid host (IPv6 goes in brackets: [::1]:14000)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concoord_lists() {
        assert_eq!(
            parse_addrs("127.0.0.1:14000, 127.0.0.1:14001").unwrap(),
            vec!["127.0.0.1:14000", "127.0.0.1:14001"]
        );
        assert_eq!(parse_addrs("localhost:1").unwrap(), vec!["localhost:1"]);
        assert_eq!(
            parse_addrs(" a.b-c:2 ,[::1]:3,a.b-c:2").unwrap(),
            vec!["a.b-c:2", "[::1]:3"]
        );
        assert_eq!(
            Seeds::parse("pod-0.peers:14000").unwrap(),
            Seeds::Addrs(vec!["pod-0.peers:14000".into()])
        );
        assert_eq!(
            Seeds::parse(" counterdomain.com ").unwrap(),
            Seeds::Domain("counterdomain.com".into())
        );
        assert_eq!(
            Seeds::parse("counterdomain.com.").unwrap(),
            Seeds::Domain("counterdomain.com.".into())
        );
        assert!(Seeds::parse("localhost").is_err());
        assert!(Seeds::parse("10.0.0.1").is_err());
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "",
            "  ",
            "127.0.0.1",
            "counterdomain.com",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "127.0.0.1:x",
            ":14000",
            "a:1,,b:2",
            "a:1,",
            "a b:1",
            "::1:14000",
            "[zz]:1",
        ] {
            let e = parse_addrs(bad).unwrap_err();
            assert!(matches!(e, ClientError::InvalidAddress(_)), "{bad}: {e}");
        }
        let e = parse_addrs("counterdomain.com").unwrap_err();
        assert!(e.to_string().contains("or a domain"));
    }
}
