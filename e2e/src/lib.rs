//! Support for the end-to-end suites that run ConCoord in docker containers: commands
//! with time limits ([`process`]), docker resources that clean up after themselves
//! ([`docker`]), and a replica cluster on a docker network with client containers
//! ([`cluster`]), serving TLS and checking identities ([`pki`]).

pub mod cluster;
pub mod docker;
pub mod pki;
pub mod process;

use std::time::Duration;

/// What went wrong in an end-to-end step; `Display` says which command or check.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("missing: {0}")]
    Missing(String),
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {limit:?}")]
    Timeout { command: String, limit: Duration },
    #[error("`{command}` failed (exit {code:?}): {stderr}")]
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error("building an image failed: {0}")]
    Image(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unexpected: {0}")]
    Unexpected(String),
    #[error("check failed: {0}")]
    Check(String),
}
