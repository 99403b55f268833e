//! Who leads, as this replica sees it: published by the replica's runtime. The zone marks
//! the leader, and only the leader writes to Route53.

pub use crate::runtime::Leadership;
