//! concoord-operator: runs ConCoord clusters on Kubernetes. Reconcile is observe -> plan ->
//! act: `observe` reads the objects and asks the replicas, `plan` decides one step, `act`
//! performs it.

pub mod crd;
pub mod generate;
pub mod names;
pub mod plan;
pub mod render;

#[cfg(test)]
mod crd_tests;
#[cfg(test)]
mod plan_tests;
