//! `concoord remote`: OpenReplica's management of existing hosts over SSH. A config file
//! names the SSH key, user and hosts ([`config`]); the system OpenSSH client reaches them
//! ([`ssh`]); small POSIX scripts do the work there ([`scripts`]); [`commands`] ties each
//! command to its outcome.

pub mod commands;
pub mod config;
pub mod scripts;
pub mod ssh;

pub use commands::{Remote, RemoteError};
