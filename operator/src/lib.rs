//! concoord-operator: runs ConCoord clusters on Kubernetes. Reconcile is observe -> plan ->
//! act: `observe` reads the objects and asks the replicas, `plan` decides one step, `act`
//! performs it.

pub mod cli;
pub mod crd;
pub mod generate;
pub mod health;
pub mod metrics;
pub mod names;
pub mod objecttypes;
pub mod observe;
pub mod plan;
pub mod podexec;
pub mod reconcile;
pub mod render;
pub mod replicas;
pub mod route53;
pub mod run;
pub mod security;

#[cfg(test)]
mod crd_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod reconcile_tests;
#[cfg(test)]
mod render_tests;
