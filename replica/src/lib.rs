//! ConCoord-rs: objects replicated with Multi-Paxos and called by clients like local
//! objects, with a distributed threading library (locks, semaphores, barriers, conditions).

pub mod command;
pub mod net;
pub mod object;
pub mod paxos;
pub mod runtime;
