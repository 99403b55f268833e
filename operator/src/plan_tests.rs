//! Table tests of `plan`: every row is one observed situation and the one step it must
//! lead to. Scenarios are replayed step by step against a small model of the cluster, so
//! whole scale-ups, scale-downs and rolling updates are checked end to end.

use crate::plan::{MemberState, Membership, Observed, PodState, Step, WaitReason, plan};
use std::collections::{BTreeMap, BTreeSet};

/// A converged, bootstrapped cluster with `members` voting members and as many ready pods.
fn steady(members: u32, leader: u32) -> Observed {
    let mut seen = Observed {
        bootstrapped: true,
        statefulset_replicas: Some(members),
        pods: BTreeMap::new(),
        membership: Some(Membership {
            view: u64::from(members),
            leader: Some(leader),
            members: BTreeMap::new(),
            strangers: Vec::new(),
        }),
        last_known_pods: members,
        claims: BTreeSet::new(),
    };
    for i in 0..members {
        seen.pods.insert(i, ready_pod());
        seen.claims.insert(i);
        member(&mut seen).insert(i, voter(i));
    }
    seen
}

fn ready_pod() -> PodState {
    PodState {
        ready: true,
        current: true,
        replica_state: Some("member".into()),
    }
}

fn voter(i: u32) -> MemberState {
    MemberState {
        id: u64::from(i) + 1,
        learner: false,
        healthy: true,
    }
}

fn member(seen: &mut Observed) -> &mut BTreeMap<u32, MemberState> {
    &mut seen.membership.as_mut().unwrap().members
}

/// Applies a step the way the cluster would eventually react to it, so scenarios can be
/// replayed: new members come up, catch up and become ready.
fn apply(seen: &mut Observed, step: &Step) {
    match *step {
        Step::Bootstrap => {
            // Pod 0 starts and founds the group.
            let founded = steady(1, 0);
            seen.statefulset_replicas = founded.statefulset_replicas;
            seen.pods = founded.pods;
            seen.membership = founded.membership;
            seen.claims = founded.claims;
        }
        Step::FinishBootstrap => seen.bootstrapped = true,
        Step::AddMember(i) => {
            member(seen).insert(
                i,
                MemberState {
                    learner: true,
                    healthy: false,
                    ..voter(i)
                },
            );
        }
        Step::GrowStatefulSet(n) | Step::ShrinkStatefulSet(n) => {
            seen.statefulset_replicas = Some(n);
            // Claims outlive a shrink (whenScaled: Retain).
            seen.pods.retain(|i, _| *i < n);
            for i in 0..n {
                seen.pods.entry(i).or_insert_with(ready_pod);
                seen.claims.insert(i);
                if let Some(m) = member(seen).get_mut(&i) {
                    // The new pod took the learner's identity and caught up.
                    *m = voter(i);
                }
            }
        }
        Step::RemoveMember(i) => {
            let m = seen.membership.as_mut().unwrap();
            m.members.remove(&i);
            if m.leader == Some(i) {
                m.leader = m.members.keys().next().copied();
            }
            if let Some(p) = seen.pods.get_mut(&i) {
                p.replica_state = Some("removed".into());
            }
        }
        Step::RollPod(i) => {
            seen.pods.insert(i, ready_pod());
        }
        Step::DeleteClaim(i) => {
            seen.claims.remove(&i);
        }
        Step::ReplacePod(i) => {
            seen.pods.insert(i, ready_pod());
            member(seen).insert(i, voter(i));
        }
        Step::RemoveStranger(id) => {
            seen.membership
                .as_mut()
                .unwrap()
                .strangers
                .retain(|(s, _)| *s != id);
        }
        Step::Wait(_) | Step::Done => {}
    }
}

/// Plans and applies until Done; returns the steps taken.
fn run(replicas: u32, mut seen: Observed) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..50 {
        let step = plan(replicas, &seen);
        if step == Step::Done {
            return steps;
        }
        assert!(
            !matches!(step, Step::Wait(_)),
            "stuck at {step:?} after {steps:?}"
        );
        apply(&mut seen, &step);
        steps.push(step);
    }
    panic!("no convergence: {steps:?}");
}

use Step::*;

#[test]
fn create_then_scale_1_to_3() {
    // A new cluster: nothing exists yet.
    let fresh = Observed::default();
    assert_eq!(plan(3, &fresh), Bootstrap);
    // Pod 0 started but has not founded the group yet.
    let founding = Observed {
        statefulset_replicas: Some(1),
        ..Observed::default()
    };
    assert_eq!(plan(3, &founding), Wait(WaitReason::Founding));
    // Pod 0 answers: record the group before anything else.
    let mut founded = steady(1, 0);
    founded.bootstrapped = false;
    assert_eq!(plan(3, &founded), FinishBootstrap);

    assert_eq!(
        run(3, fresh),
        [
            Bootstrap,
            FinishBootstrap,
            AddMember(1),
            GrowStatefulSet(2),
            AddMember(2),
            GrowStatefulSet(3)
        ]
    );
    assert_eq!(
        run(3, steady(1, 0)),
        [
            AddMember(1),
            GrowStatefulSet(2),
            AddMember(2),
            GrowStatefulSet(3)
        ]
    );
}

#[test]
fn scale_3_to_5_adds_each_member_before_its_pod() {
    assert_eq!(
        run(5, steady(3, 0)),
        [
            AddMember(3),
            GrowStatefulSet(4),
            AddMember(4),
            GrowStatefulSet(5)
        ]
    );
}

#[test]
fn scale_5_to_3_removes_each_member_before_its_pod() {
    assert_eq!(
        run(3, steady(5, 0)),
        [
            RemoveMember(4),
            ShrinkStatefulSet(4),
            DeleteClaim(4),
            RemoveMember(3),
            ShrinkStatefulSet(3),
            DeleteClaim(3)
        ]
    );
}

#[test]
fn scale_3_to_1() {
    assert_eq!(
        run(1, steady(3, 0)),
        [
            RemoveMember(2),
            ShrinkStatefulSet(2),
            DeleteClaim(2),
            RemoveMember(1),
            ShrinkStatefulSet(1),
            DeleteClaim(1)
        ]
    );
}

#[test]
fn the_leader_is_removed_like_any_member() {
    // The replica hands leadership over itself when asked to remove the leader.
    let seen = steady(5, 4);
    assert_eq!(plan(3, &seen), RemoveMember(4));
    assert_eq!(
        run(3, seen),
        [
            RemoveMember(4),
            ShrinkStatefulSet(4),
            DeleteClaim(4),
            RemoveMember(3),
            ShrinkStatefulSet(3),
            DeleteClaim(3)
        ]
    );
}

#[test]
fn a_failed_member_blocks_growth_but_not_removal() {
    let mut seen = steady(3, 0);
    member(&mut seen).get_mut(&1).unwrap().healthy = false;
    seen.pods.get_mut(&1).unwrap().ready = false;
    assert_eq!(plan(5, &seen), Wait(WaitReason::MemberUnhealthy(1)));
    assert_eq!(plan(3, &seen), Wait(WaitReason::MemberUnhealthy(1)));
    // Scaling down past the failed member removes it: that is progress.
    let mut seen = steady(3, 0);
    member(&mut seen).get_mut(&2).unwrap().healthy = false;
    assert_eq!(plan(2, &seen), RemoveMember(2));
    // Removing the highest member must leave a healthy majority behind: 3->2 with member
    // 1 down would leave {0,1} with one live voter, stuck for good.
    let mut seen = steady(3, 0);
    member(&mut seen).get_mut(&1).unwrap().healthy = false;
    assert_eq!(plan(2, &seen), Wait(WaitReason::MemberUnhealthy(1)));
    // 5->3 with members 1 and 2 down: {0,1,2,3} would have two live voters of four.
    let mut seen = steady(5, 0);
    member(&mut seen).get_mut(&1).unwrap().healthy = false;
    member(&mut seen).get_mut(&2).unwrap().healthy = false;
    assert_eq!(plan(3, &seen), Wait(WaitReason::MemberUnhealthy(1)));
    // A stranger is not removed either when the rest has no healthy majority.
    let mut seen = steady(3, 0);
    member(&mut seen).get_mut(&1).unwrap().healthy = false;
    member(&mut seen).get_mut(&2).unwrap().healthy = false;
    seen.membership
        .as_mut()
        .unwrap()
        .strangers
        .push((9, "10.0.0.9:14000".into()));
    assert_eq!(plan(3, &seen), Wait(WaitReason::MemberUnhealthy(1)));
    // Only strangers short of a majority: no ordinal to name.
    let mut seen = steady(1, 0);
    for id in [8, 9] {
        seen.membership
            .as_mut()
            .unwrap()
            .strangers
            .push((id, format!("10.0.0.{id}:14000")));
    }
    assert_eq!(plan(1, &seen), Wait(WaitReason::NoHealthyMajority));
    // A pod that is not ready (its replica restarting) also holds growth.
    let mut seen = steady(3, 0);
    seen.pods.get_mut(&2).unwrap().ready = false;
    assert_eq!(plan(5, &seen), Wait(WaitReason::PodNotReady(2)));
}

#[test]
fn a_removed_or_halted_replica_in_a_wanted_pod_is_replaced() {
    // Pod 1's replica was removed from the view (e.g. by an administrator) but the pod is
    // still wanted: it must restart empty and rejoin under its name.
    let mut seen = steady(3, 0);
    member(&mut seen).remove(&1);
    seen.pods.get_mut(&1).unwrap().replica_state = Some("removed".into());
    seen.pods.get_mut(&1).unwrap().ready = false;
    assert_eq!(plan(3, &seen), ReplacePod(1));
    assert_eq!(run(3, seen), [ReplacePod(1)]);

    let mut seen = steady(3, 0);
    member(&mut seen).get_mut(&2).unwrap().healthy = false;
    seen.pods.get_mut(&2).unwrap().replica_state = Some("halted: disk full".into());
    assert_eq!(plan(3, &seen), ReplacePod(2));
    // A removed replica beyond the wanted count is shrunk away, not replaced.
    let mut seen = steady(3, 0);
    member(&mut seen).remove(&2);
    seen.pods.get_mut(&2).unwrap().replica_state = Some("removed".into());
    assert_eq!(plan(2, &seen), ShrinkStatefulSet(2));
}

#[test]
fn repair_after_a_crash_between_steps() {
    // Member 3 added, then the operator crashed before growing the StatefulSet.
    let mut seen = steady(3, 0);
    member(&mut seen).insert(
        3,
        MemberState {
            learner: true,
            healthy: false,
            ..voter(3)
        },
    );
    assert_eq!(plan(5, &seen), GrowStatefulSet(4));
    // ... and then the user changed their mind and wants 3 again: the learner leaves.
    assert_eq!(plan(3, &seen), RemoveMember(3));

    // StatefulSet grown, its pod is catching up: wait, do not add the next member.
    let mut seen = steady(3, 0);
    seen.statefulset_replicas = Some(4);
    seen.pods.insert(
        3,
        PodState {
            ready: false,
            current: true,
            replica_state: Some("learner".into()),
        },
    );
    member(&mut seen).insert(
        3,
        MemberState {
            learner: true,
            healthy: true,
            ..voter(3)
        },
    );
    assert_eq!(plan(5, &seen), Wait(WaitReason::CatchingUp(3)));

    // Member promoted but its pod is not ready yet.
    member(&mut seen).insert(3, voter(3));
    assert_eq!(plan(5, &seen), Wait(WaitReason::PodNotReady(3)));

    // Member 4 removed, then the operator crashed before shrinking.
    let mut seen = steady(5, 0);
    member(&mut seen).remove(&4);
    seen.pods.get_mut(&4).unwrap().replica_state = Some("removed".into());
    assert_eq!(plan(3, &seen), ShrinkStatefulSet(4));

    // StatefulSet shrunk (e.g. by hand) but the members were never removed.
    let mut seen = steady(5, 0);
    seen.statefulset_replicas = Some(3);
    seen.pods.retain(|i, _| *i < 3);
    assert_eq!(plan(3, &seen), RemoveMember(4));
    assert_eq!(
        run(3, seen),
        [
            RemoveMember(4),
            DeleteClaim(4),
            RemoveMember(3),
            DeleteClaim(3)
        ]
    );

    // Shrunk too far by hand while 5 are wanted: grow back to cover the members.
    let mut seen = steady(5, 0);
    seen.statefulset_replicas = Some(3);
    seen.pods.retain(|i, _| *i < 3);
    assert_eq!(plan(5, &seen), GrowStatefulSet(5));

    // Group founded but the operator crashed before recording it.
    let mut seen = steady(1, 0);
    seen.bootstrapped = false;
    assert_eq!(plan(3, &seen), FinishBootstrap);

    // Bootstrapped, but no replica answers (all pods restarting): wait, never re-found.
    let mut seen = steady(3, 0);
    seen.membership = None;
    seen.last_known_pods = 3;
    assert_eq!(plan(3, &seen), Wait(WaitReason::NoReplicaAnswers));
    // The StatefulSet was scaled to 0 or deleted by hand: bring the members' pods back.
    seen.statefulset_replicas = Some(0);
    assert_eq!(plan(3, &seen), GrowStatefulSet(3));
    seen.statefulset_replicas = None;
    assert_eq!(plan(5, &seen), GrowStatefulSet(3));

    // A member that is not one of our pods (added by hand) is removed.
    let mut seen = steady(3, 0);
    seen.membership
        .as_mut()
        .unwrap()
        .strangers
        .push((9, "10.0.0.9:14000".into()));
    assert_eq!(plan(3, &seen), RemoveStranger(9));
}

#[test]
fn rolling_update_goes_follower_by_follower_and_the_leader_last() {
    let mut seen = steady(3, 1);
    for p in seen.pods.values_mut() {
        p.current = false;
    }
    assert_eq!(plan(3, &seen), RollPod(2));
    assert_eq!(run(3, seen.clone()), [RollPod(2), RollPod(0), RollPod(1)]);

    // The rolled pod is back but not ready yet: wait for it.
    seen.pods.insert(
        2,
        PodState {
            ready: false,
            current: true,
            replica_state: Some("joining".into()),
        },
    );
    assert_eq!(plan(3, &seen), Wait(WaitReason::PodNotReady(2)));
    // A pod that was not rolled is not ready: the update is blocked.
    seen.pods.insert(2, ready_pod());
    seen.pods.get_mut(&0).unwrap().ready = false;
    assert_eq!(plan(3, &seen), Wait(WaitReason::UpgradeBlocked(0)));
    // An unhealthy member that has not been rolled also blocks it.
    seen.pods.get_mut(&0).unwrap().ready = true;
    member(&mut seen).get_mut(&1).unwrap().healthy = false;
    assert_eq!(plan(3, &seen), Wait(WaitReason::UpgradeBlocked(1)));

    // Scaling and an update together: membership first, then the roll.
    let mut seen = steady(3, 0);
    seen.pods.get_mut(&1).unwrap().current = false;
    assert_eq!(run(4, seen), [AddMember(3), GrowStatefulSet(4), RollPod(1)]);
}

#[test]
fn converged_is_done_and_zero_replicas_means_one() {
    assert_eq!(plan(3, &steady(3, 2)), Done);
    assert_eq!(plan(1, &steady(1, 0)), Done);
    assert_eq!(plan(0, &steady(1, 0)), Done);
}

#[test]
fn claims_go_only_with_members_that_left_and_pods_scaled_away() {
    // Shrunk, then the operator crashed before deleting the claim: it is found again.
    let mut seen = steady(5, 0);
    member(&mut seen).remove(&4);
    seen.statefulset_replicas = Some(4);
    seen.pods.remove(&4);
    assert_eq!(plan(3, &seen), DeleteClaim(4));
    assert_eq!(
        run(3, seen),
        [
            DeleteClaim(4),
            RemoveMember(3),
            ShrinkStatefulSet(3),
            DeleteClaim(3)
        ]
    );

    // `kubectl scale sts demo --replicas=0` by hand: nobody answers, every claim stays
    // and the pods come back on their data.
    let mut seen = steady(3, 0);
    seen.statefulset_replicas = Some(0);
    seen.pods.clear();
    seen.membership = None;
    assert_eq!(plan(3, &seen), GrowStatefulSet(3));
    assert_eq!(plan(1, &seen), GrowStatefulSet(3));

    // Scaled to 1 by hand while the members still answer: their claims stay.
    let mut seen = steady(3, 0);
    seen.statefulset_replicas = Some(1);
    seen.pods.retain(|i, _| *i < 1);
    assert_eq!(run(3, seen.clone()), [GrowStatefulSet(3)]);
    // Wanting 1 then, members leave first; each claim goes only after its member left.
    assert_eq!(
        run(1, seen),
        [
            RemoveMember(2),
            DeleteClaim(2),
            RemoveMember(1),
            DeleteClaim(1)
        ]
    );

    // A wanted ordinal's claim stays even when its member is gone: the pod comes back on
    // it (and is replaced if its replica reports "removed").
    let mut seen = steady(3, 0);
    member(&mut seen).remove(&2);
    seen.statefulset_replicas = Some(2);
    seen.pods.remove(&2);
    assert_eq!(plan(3, &seen), AddMember(2));
}
