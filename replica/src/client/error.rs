//! What can go wrong with a remote call, as one enum a caller can match on.

/// The error of a client operation. `Display` gives one line a user can read; a remote
/// error reads like ConCoord's Python traceback tail: `RuntimeError: cannot release un-acquired lock`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The object raised: Python exception name and message (a bare `KeyError` prints as
    /// Python prints it, without a colon).
    #[error("{kind}{}{message}", if message.is_empty() { "" } else { ": " })]
    Remote { kind: String, message: String },
    /// The session expired (the client was unreachable for longer than the lease), so the
    /// locks and permits it held are gone. The client has opened a new session.
    #[error("SessionExpired: the session expired and its locks and permits were released")]
    SessionExpired,
    /// No reply before the call's deadline. The call may still take effect.
    #[error("Timeout: no reply before the deadline")]
    Timeout,
    /// No replica could be reached, or none led, for the failover timeout.
    #[error("no replica reachable (tried {}): {last_error}", tried_list(.tried))]
    NoReplica {
        tried: Vec<String>,
        last_error: String,
    },
    /// The other side broke the protocol (bad frame, wrong version, refused us).
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// The client was closed, or its background task is gone.
    #[error("client closed")]
    Closed,
}

impl ClientError {
    pub fn remote(kind: impl Into<String>, message: impl Into<String>) -> ClientError {
        ClientError::Remote {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// True for a remote error of this Python exception name (e.g. "KeyError").
    pub fn is_remote(&self, name: &str) -> bool {
        matches!(self, ClientError::Remote { kind, .. } if kind == name)
    }
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        "nothing".to_string()
    } else {
        tried.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_clear_line() {
        let e = ClientError::remote("RuntimeError", "cannot release un-acquired lock");
        assert_eq!(
            e.to_string(),
            "RuntimeError: cannot release un-acquired lock"
        );
        assert!(e.is_remote("RuntimeError"));
        assert_eq!(ClientError::remote("KeyError", "").to_string(), "KeyError");
        assert!(!e.is_remote("KeyError"));
        let e = ClientError::NoReplica {
            tried: vec!["a:1".into(), "b:2".into()],
            last_error: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "no replica reachable (tried a:1, b:2): connection refused"
        );
    }
}
