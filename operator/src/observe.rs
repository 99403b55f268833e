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
    last_members: &[String],
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
        if let Some(i) = names.ordinal_of_pod(m) {
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
    last_members: &[String],
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
        last_known_pods: last_members
            .iter()
            .filter_map(|m| names.ordinal_of_pod(m))
            .map(|i| i + 1)
            .max()
            .unwrap_or(0),
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
    // A removed replica's view is the one it was dropped from and never changes again:
    // when only removed replicas answer, membership is unknown rather than planned on it.
    let current = || reports.values().filter(|r| r.state != "removed");
    let Some(best) = current()
        .filter(|r| r.is_leader)
        .max_by_key(|r| r.view.number)
        .or_else(|| current().max_by_key(|r| r.view.number))
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

#[cfg(test)]
mod tests {
    use super::*;
    use concoord::command::View;

    fn names() -> ClusterNames {
        ClusterNames::new("demo", "apps")
    }

    fn report(i: u32, view: &View, leader: u32, state: &str, executed: u64) -> StatusReport {
        StatusReport {
            replica: u64::from(i) + 1,
            addr: names().member_address(i),
            view: view.clone(),
            leader: Some(u64::from(leader) + 1),
            is_leader: i == leader,
            ballot: (1, u64::from(leader) + 1),
            decided_upto: 500,
            executed_upto: executed,
            sessions: 0,
            objects: 0,
            state: state.into(),
        }
    }

    fn pod(i: u32, ready: bool, revision: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("demo-{i}"),
                "labels": {"controller-revision-hash": revision}},
            "status": {"conditions": [{"type": "Ready",
                "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn members_health_learners_strangers_and_revisions() {
        let n = names();
        let view = View {
            number: 12,
            members: [
                (1, n.member_address(0)),
                (2, n.member_address(1)),
                (9, "10.9.9.9:14000".into()),
            ]
            .into_iter()
            .collect(),
            learners: [(4, n.member_address(3))].into_iter().collect(),
            next_id: 10,
            group: 5,
        };
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo"},
            "spec": {"replicas": 4, "selector": {}, "serviceName": "demo-peers",
                "template": {}},
            "status": {"replicas": 4, "updateRevision": "r2"},
        }))
        .unwrap();
        let reports: BTreeMap<u32, StatusReport> = [
            (0, report(0, &view, 0, "member", 500)),
            // Far behind the leader: not healthy.
            (1, report(1, &view, 0, "member", 100)),
            // Pod 2's replica is not in the view at all (removed).
            (2, report(2, &view, 0, "removed", 500)),
            (3, report(3, &view, 0, "learner", 480)),
        ]
        .into_iter()
        .collect();
        let pods = [
            pod(0, true, "r2"),
            pod(1, true, "r1"),
            pod(2, false, "r2"),
            pod(3, false, "r2"),
        ];
        let seen = summarize(&n, true, &[], Some(&sts), &pods, &reports);
        let m = seen.observed.membership.as_ref().unwrap();
        assert_eq!((m.view, m.leader), (12, Some(0)));
        assert!(m.members[&0].healthy && !m.members[&0].learner);
        assert!(!m.members[&1].healthy, "behind by 400 slots");
        assert!(!m.members.contains_key(&2));
        assert!(m.members[&3].learner && m.members[&3].healthy);
        assert_eq!(m.strangers, [(9, "10.9.9.9:14000".to_string())]);
        assert_eq!(seen.observed.statefulset_replicas, Some(4));
        assert!(seen.observed.pods[&0].current && !seen.observed.pods[&1].current);
        assert_eq!(
            seen.observed.pods[&2].replica_state.as_deref(),
            Some("removed")
        );
        assert_eq!(seen.ready_pods, 2);
        assert_eq!(seen.leader.as_deref(), Some("demo-0"));
        let names_in_status: Vec<&str> = seen.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names_in_status, ["demo-0", "demo-1", "demo-3"]);
        assert_eq!(seen.seeds.len(), 3);
        // Ask every pod, and members the last status knew beyond the StatefulSet.
        let last = vec!["demo-6".to_string()];
        assert_eq!(
            ordinals_to_ask(&n, Some(&sts), &pods, &last),
            (0..7).collect::<Vec<_>>()
        );
        // Nobody answers: no membership, the plan waits.
        let silent = summarize(&n, true, &last, Some(&sts), &pods, &BTreeMap::new());
        assert_eq!(silent.observed.last_known_pods, 7);
        assert!(silent.observed.membership.is_none());
    }

    #[test]
    fn a_removed_replica_alone_leaves_membership_unknown() {
        let n = names();
        // The view pod 2 was removed from; it still holds it and answers "removed".
        let stale = View {
            number: 4,
            members: (0..3)
                .map(|i| (u64::from(i) + 1, n.member_address(i)))
                .collect(),
            learners: Default::default(),
            next_id: 4,
            group: 5,
        };
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo"},
            "spec": {"replicas": 3, "selector": {}, "serviceName": "demo-peers",
                "template": {}},
        }))
        .unwrap();
        let pods = [
            pod(0, false, "r1"),
            pod(1, false, "r1"),
            pod(2, false, "r1"),
        ];
        let reports: BTreeMap<u32, StatusReport> = [(2, report(2, &stale, 0, "removed", 500))]
            .into_iter()
            .collect();
        let seen = summarize(&n, true, &[], Some(&sts), &pods, &reports);
        assert!(seen.observed.membership.is_none(), "{seen:?}");
        assert!(seen.leader.is_none() && seen.view.is_none() && seen.seeds.is_empty());
        // Its own state is still seen, for the plan's replacement of removed pods.
        assert_eq!(
            seen.observed.pods[&2].replica_state.as_deref(),
            Some("removed")
        );
        // With a current member answering too, that member's view is used.
        let mut reports = reports;
        reports.insert(0, report(0, &stale, 0, "member", 500));
        let seen = summarize(&n, true, &[], Some(&sts), &pods, &reports);
        assert_eq!(seen.observed.membership.map(|m| m.view), Some(4));
    }
}
