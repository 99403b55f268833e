//! Replica address lists as ConCoord writes them: `"127.0.0.1:14000, 127.0.0.1:14001"`.
//!
//! Extension point: a DNS domain (`counterdomain.com`, resolved through its SRV records)
//! is the other form ConCoord accepts. It is refused here for now; when it comes, [`Seeds`]
//! gains the domain and [`Seeds::resolve`] looks it up, and nothing else in the client changes.

use super::ClientError;

/// Where a client starts looking for the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds {
    addrs: Vec<String>,
}

impl Seeds {
    /// Parses a comma-separated list of `host:port` (also a single one).
    pub fn parse(list: &str) -> Result<Seeds, ClientError> {
        let addrs = parse_addrs(list)?;
        Ok(Seeds { addrs })
    }

    /// The addresses to try, in the order given.
    pub fn resolve(&self) -> Vec<String> {
        self.addrs.clone()
    }
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
            "expected host:port (DNS domains are not supported yet)",
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
            Seeds::parse("pod-0.peers:14000").unwrap().resolve(),
            vec!["pod-0.peers:14000"]
        );
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
        assert!(e.to_string().contains("DNS domains are not supported yet"));
    }
}
