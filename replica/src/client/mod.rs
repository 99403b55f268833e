//! The client library: connect to a group, find its leader, and call objects as if local.
//!
//! ```no_run
//! # async fn demo() -> Result<(), concoord::client::ClientError> {
//! use concoord::client::{Client, ClientOptions};
//! let client = Client::connect("127.0.0.1:14000, 127.0.0.1:14001", ClientOptions::default()).await?;
//! let counter = client.counter("counter");
//! counter.increment().await?;
//! println!("{}", counter.getvalue().await?);
//! client.close().await?;
//! # Ok(()) }
//! ```
//!
//! One [`Client`] is one session and one connection to the leader, shared by all its clones:
//! calls from many tasks are pipelined and matched to their replies by sequence number.
//! When the leader changes or the connection drops, the client follows the replicas' hints
//! (or tries the other addresses with backoff) and re-sends the calls in flight unchanged;
//! the replicas answer those retries exactly once.

mod addr;
mod conn;
mod convert;
mod driver;
mod error;
mod handle;
mod membership;
mod options;
mod proxies;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

pub use addr::{Seeds, check_addr, parse_addrs, resolve_addrs};
pub use conn::{fetch_status, fetch_status_with};
pub use convert::{acquired, truthy};
pub use error::ClientError;
pub use handle::{Client, TypeSummary, is_blocking_method};
pub use membership::{add_member, add_member_over, remove_member, remove_member_over};
pub use options::{ClientOptions, Credentials};
pub use proxies::{
    Bank, Barrier, BoundedSemaphore, Condition, Counter, Dict, JobManager, Lock, Log, Membership,
    MeshMembership, ObjectRef, Queue, RLock, Semaphore, Stack,
};
