//! `concoord ec2 ...`: launch replicas on EC2 instances and manage them by a cluster tag;
//! `concoord replica --discover ec2:cluster=NAME`: find the cluster's other replicas from
//! inside an instance.
//!
//! Every instance of cluster NAME carries the tag `concoord:cluster=NAME` (and `Name`
//! `concoord-NAME`); the settings `ec2 scale` needs to launch more of the same are kept in
//! `concoord:*` tags too, so the cluster itself is the only state.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod discover;
pub mod error;
pub mod launch;
pub mod list;
pub mod metadata;
pub mod scale;
pub mod terminate;
pub mod userdata;

pub use error::Ec2Error;

/// The tag naming an instance's cluster.
pub const CLUSTER_TAG: &str = "concoord:cluster";
/// The replica image the instance runs.
pub const IMAGE_TAG: &str = "concoord:image";
/// The port the replica listens on.
pub const PORT_TAG: &str = "concoord:port";
/// The DNS domain the replicas serve (`-n`), when launched with `--domain`.
pub const DOMAIN_TAG: &str = "concoord:domain";
/// The Route53 zone the replicas keep (`-r --route53-zone-id`).
pub const ZONE_TAG: &str = "concoord:route53-zone-id";
/// The name the cluster's replica certificate carries, when launched with `--pki`.
pub const TLS_TAG: &str = "concoord:tls-server-name";
/// "on" when the replicas were launched with `--auth-file`.
pub const AUTH_TAG: &str = "concoord:auth";
/// The replica's "host:port" when it is not the instance's private IP and the cluster
/// port (a NAT in between, or a test standing in for the instance).
pub const ADDR_TAG: &str = "concoord:addr";

/// The port replicas listen on unless launched with another.
pub const DEFAULT_PORT: u16 = 14000;

/// The replica image launched unless `--image` names another.
pub fn default_image() -> String {
    format!("concoord/replica:{}", env!("CARGO_PKG_VERSION"))
}
