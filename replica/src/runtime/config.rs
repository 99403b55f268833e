//! What a replica process is told to do, independent of how it was told (CLI, tests,
//! `concoord local`).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// `-o`: object type to create as the default object (dotted or short name); its
    /// instance is named after the class, lower-cased.
    pub object: Option<String>,
    /// `--object-path`: directories searched (before `PYTHONPATH`) for the module of a
    /// user type named by `-o module.Class`.
    pub object_path: Vec<std::path::PathBuf>,
    /// `-a`: address (IP or host name) this replica listens on and advertises.
    pub addr: String,
    /// `-p`: port for clients and peers.
    pub port: u16,
    /// `-b`: a member to join through; none means this replica founds a new group.
    pub bootstrap: Option<String>,
    pub timing: Timing,
    /// `-w` / `--data-dir`: where the write-ahead log and snapshots live; none keeps
    /// everything in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Accept `Fault` frames from test harnesses (never in production).
    pub allow_fault_injection: bool,
    /// `-n` (and `-r`): serve DNS for the group's domain beside the replica.
    pub dns: Option<crate::dns::DnsSettings>,
    /// `--advertise-ip`: this replica's current IP behind a stable `-a` name, announced to
    /// the other members on every link it opens.
    pub advertise_ip: Option<std::net::IpAddr>,
    /// `--tls-cert/--tls-key/--tls-ca`: serve TLS and link to peers with mutual TLS.
    pub tls: Option<crate::net::secure::TlsFiles>,
    /// `--auth-file`: clients must prove who they are (a token or a client certificate)
    /// and may do what their role allows.
    pub auth_file: Option<std::path::PathBuf>,
    /// `--token`: what this replica shows when it links to peers or joins a group whose
    /// replicas have an auth file and no TLS (with TLS its certificate proves it).
    pub token: Option<crate::auth::Token>,
}

impl ReplicaConfig {
    /// The address peers and clients use to reach this replica.
    pub fn advertised(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }
}

/// Timeouts of the failure detector and of client leases.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// A follower that hears nothing for a random time in [election, 2 * election) runs
    /// for leader.
    pub election: Duration,
    /// A client session with no keep-alive for this long expires.
    pub session_lease: Duration,
    /// How long a joining replica keeps trying its bootstrap before giving up.
    pub join_timeout: Duration,
    /// Snapshot the objects and compact the log every this many slots; followers further
    /// behind than that receive the snapshot instead of the log.
    pub snapshot_every: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(50),
            election: Duration::from_millis(500),
            session_lease: Duration::from_secs(10),
            join_timeout: Duration::from_secs(30),
            snapshot_every: 10_000,
        }
    }
}
