//! The tokio runtime around the sans-IO core: listeners, peer links, client connections.

pub mod config;

pub use config::{ReplicaConfig, Timing};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot join through {bootstrap}: {reason}")]
    Join { bootstrap: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Runs a replica until it is stopped. (Being written.)
pub async fn run_replica(_cfg: ReplicaConfig) -> Result<(), RuntimeError> {
    Err(RuntimeError::Other("replica runtime not built yet".into()))
}

/// Runs `replicas` replicas on 127.0.0.1 from `port` until Ctrl-C. (Being written.)
pub async fn run_local(_replicas: usize, _port: u16, _object: Option<String>) -> Result<(), RuntimeError> {
    Err(RuntimeError::Other("local cluster not built yet".into()))
}
