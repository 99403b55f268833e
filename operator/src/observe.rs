//! Observing a cluster: its StatefulSet and pods from the API server, the view from the
//! replicas themselves. `summarize` is pure; `ask_replicas` does the network part.

use crate::crd::MemberStatus;
use crate::names::ClusterNames;
use crate::plan::{MemberState, Membership, Observed, PodState};
use crate::replicas::Replicas;
use concoord::net::wire::StatusReport;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// Decided slots a healthy member may trail its leader by (as `concoord probe ready`).
pub const MAX_LAG: u64 = concoord::tools::probe::MAX_LAG;

/// Everything observed, for the plan and for the status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub observed: Observed,
    pub members: Vec<MemberStatus>,
    /// Pod name of the leader.
    pub leader: Option<String>,
    pub view: Option<u64>,
    pub ready_pods: u32,
    /// Addresses of members that answered: where membership changes are sent.
    pub seeds: Vec<String>,
}

/// The ordinals worth asking: every pod the StatefulSet has or had, and the members the
/// last status listed.
pub fn ordinals_to_ask(
    names: &ClusterNames,
    sts: Option<&StatefulSet>,
    pods: &[Pod],
    last_members: &[MemberStatus],
) -> Vec<u32> {
    let mut top = sts_replicas(sts).unwrap_or(0);
    for p in pods {
        if let Some(i) = p
            .metadata
            .name
            .as_deref()
            .and_then(|n| names.ordinal_of_pod(n))
        {
            top = top.max(i + 1);
        }
    }
    for m in last_members {
        if let Some(i) = names.ordinal_of_pod(&m.name) {
            top = top.max(i + 1);
        }
    }
    (0..top).collect()
}

/// Asks each ordinal's replica for its status, concurrently.
pub async fn ask_replicas(
    names: &ClusterNames,
    ordinals: &[u32],
    replicas: &dyn Replicas,
) -> BTreeMap<u32, StatusReport> {
    let asks = ordinals.iter().map(|&i| async move {
        let addr = names.member_address(i);
        (i, replicas.status(&addr).await)
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|(i, r)| match r {
            Ok(report) => Some((i, report)),
            Err(e) => {
                tracing::debug!("{}: no status: {e}", names.pod(i));
                None
            }
        })
        .collect()
}

fn sts_replicas(sts: Option<&StatefulSet>) -> Option<u32> {
    sts.map(|s| {
        s.spec
            .as_ref()
            .and_then(|s| s.replicas)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(1)
    })
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Turns the API objects and the replicas' reports into what `plan` and the status need.
pub fn summarize(
    names: &ClusterNames,
    bootstrapped: bool,
    sts: Option<&StatefulSet>,
    pods: &[Pod],
    reports: &BTreeMap<u32, StatusReport>,
) -> Seen {
    let update_revision = sts
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let mut observed = Observed {
        bootstrapped,
        statefulset_replicas: sts_replicas(sts),
        ..Observed::default()
    };
    for p in pods {
        let Some(i) = p
            .metadata
            .name
            .as_deref()
            .and_then(|n| names.ordinal_of_pod(n))
        else {
            continue;
        };
        let revision = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("controller-revision-hash"));
        observed.pods.insert(
            i,
            PodState {
                ready: pod_ready(p),
                current: match (&update_revision, revision) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                },
                replica_state: reports.get(&i).map(|r| r.state.clone()),
            },
        );
    }
    let ready_pods = observed.pods.values().filter(|p| p.ready).count() as u32;
    // The leader's view is the newest; without a leader answering, the highest view seen.
    let Some(best) = reports
        .values()
        .filter(|r| r.is_leader)
        .max_by_key(|r| r.view.number)
        .or_else(|| reports.values().max_by_key(|r| r.view.number))
    else {
        return Seen {
            observed,
            ready_pods,
            ..Seen::default()
        };
    };
    let view = &best.view;
    let leader_report = reports.values().find(|r| r.is_leader);
    let mut membership = Membership {
        view: view.number,
        leader: best
            .leader
            .and_then(|id| view.addr_of(id))
            .and_then(|a| names.ordinal_of(a)),
        ..Membership::default()
    };
    let mut members = Vec::new();
    let mut seeds = Vec::new();
    for (id, addr) in view.everyone() {
        let learner = view.is_learner(id);
        let Some(i) = names.ordinal_of(addr) else {
            membership.strangers.push((id, addr.to_string()));
            continue;
        };
        let own = reports.get(&i).filter(|r| r.replica == id);
        if own.is_some() {
            seeds.push(addr.to_string());
        }
        let healthy = own.is_some_and(|r| {
            let caught_up = leader_report
                .is_none_or(|l| l.decided_upto.saturating_sub(r.executed_upto) <= MAX_LAG);
            let serving = if learner {
                !r.state.starts_with("halted")
            } else {
                r.state == "member"
            };
            serving && caught_up && r.leader.is_some()
        });
        membership.members.insert(
            i,
            MemberState {
                id,
                learner,
                healthy,
            },
        );
        members.push(MemberStatus {
            name: names.pod(i),
            address: addr.to_string(),
            id: i64::try_from(id).unwrap_or(i64::MAX),
            leader: membership.leader == Some(i),
            healthy,
            learner,
        });
    }
    members.sort_by_key(|m| names.ordinal_of_pod(&m.name));
    Seen {
        leader: membership.leader.map(|i| names.pod(i)),
        view: Some(view.number),
        observed: Observed {
            membership: Some(membership),
            ..observed
        },
        members,
        ready_pods,
        seeds,
    }
}
