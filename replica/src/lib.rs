//! ConCoord-rs: objects replicated with Multi-Paxos and called by clients like local
//! objects, with a distributed threading library (locks, semaphores, barriers, conditions).

pub mod auth;
pub mod aws;
pub mod cli;
pub mod client;
pub mod command;
pub mod config_dir;
pub mod dns;
pub mod ec2;
pub mod json;
pub mod linearizability;
pub mod logging;
pub mod net;
pub mod node;
pub mod object;
pub mod paxos;
pub mod pki;
pub mod remote;
pub mod runtime;
pub mod sim;
pub mod state;
pub mod storage;
pub mod tls;
pub mod tools;
