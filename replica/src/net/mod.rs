//! Framed transport: length-prefixed rmp-serde frames, the wire messages, and the
//! listener that tells clients from peers by their hello; host name resolution; TLS.

pub mod frame;
pub mod resolve;
pub mod secure;
pub mod wire;
