//! Deadlines and periods of a client.

use crate::auth::Token;
use crate::net::secure::ClientTls;
use std::time::Duration;

/// How a [`Client`](super::Client) times its calls, keep-alives and failover.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// TCP connect plus handshake with one replica.
    pub connect_timeout: Duration,
    /// Deadline of a non-blocking call; `None` waits forever.
    pub call_timeout: Option<Duration>,
    /// Deadline of a blocking call (acquire, wait, get); `None` (the default) waits until
    /// granted, across leader changes. A blocking call that times out may still be granted
    /// later on the replicas.
    pub blocking_timeout: Option<Duration>,
    /// How often the session lease is renewed: at most a quarter of the replicas' lease
    /// (10 s by default; the client cannot see it, so the default also suits short leases).
    pub keepalive_interval: Duration,
    /// A connection whose keep-alive stays unanswered this long is dropped and the client
    /// fails over.
    pub keepalive_timeout: Duration,
    /// Calls fail with `NoReplica` when no leader could be reached for this long.
    pub failover_timeout: Duration,
    /// First and largest pause between reconnect attempts (doubling, with jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Connect over TLS, checking replicas against this CA (and showing a client
    /// certificate if it has one); `None` speaks plaintext.
    pub tls: Option<crate::net::secure::ClientTls>,
    /// A bearer token for replicas with an auth file (`--token`, `CONCOORD_TOKEN`).
    pub token: Option<Token>,
}

impl ClientOptions {
    /// What the client shows every replica it connects to.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            tls: self.tls.clone(),
            token: self.token.clone(),
        }
    }
}

/// How a connection is protected and who it says it is: TLS (with the group's CA, and a
/// client certificate if it has one) and a bearer token, each optional.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub tls: Option<ClientTls>,
    pub token: Option<Token>,
}

impl From<Option<&ClientTls>> for Credentials {
    fn from(tls: Option<&ClientTls>) -> Credentials {
        Credentials {
            tls: tls.cloned(),
            token: None,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Some(Duration::from_secs(30)),
            blocking_timeout: None,
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(3),
            failover_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            tls: None,
            token: None,
        }
    }
}
