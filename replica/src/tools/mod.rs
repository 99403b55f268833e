//! The command-line tools behind `concoord call | lock | status | bench | workload | logdaemon | membership | probe | certs`. Each takes
//! its parsed arguments from [`crate::cli`] and returns a [`crate::cli::CliError`].

pub mod bench;
pub mod call;
pub mod certs;
pub mod lock;
pub mod logdaemon;
pub mod membership;
pub mod probe;
pub mod proxygen;
pub mod status;
pub mod types;
pub mod workload;
