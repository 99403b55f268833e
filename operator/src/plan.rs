//! Deciding the next step: a pure function of the desired replica count and what was
//! observed. One step per reconcile, so every situation — an operator crash between two
//! steps included — is a row in a table test.
//!
//! Membership always changes in Paxos first: scaling up adds member i (as a learner) and
//! then grows the StatefulSet to start its pod; scaling down removes the highest member and
//! then shrinks the StatefulSet. Pods are rolled one at a time (the StatefulSet uses the
//! OnDelete strategy), followers first and the leader last.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the operator saw of one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The status says the group was founded.
    pub bootstrapped: bool,
    /// The StatefulSet's `.spec.replicas`, if the StatefulSet exists.
    pub statefulset_replicas: Option<u32>,
    /// Pods of the StatefulSet by ordinal.
    pub pods: BTreeMap<u32, PodState>,
    /// The view as the replicas report it; none when no replica answered.
    pub membership: Option<Membership>,
    /// Pods the members in the last recorded status need (highest ordinal + 1).
    pub last_known_pods: u32,
    /// Ordinals whose data volume claim exists.
    pub claims: BTreeSet<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodState {
    /// The pod's Ready condition (readiness probe: voting member and caught up).
    pub ready: bool,
    /// The pod runs the StatefulSet's current revision (image, flags).
    pub current: bool,
    /// The replica's own report of how it serves ("member", "learner", "joining",
    /// "removed", "halted: why"), when it answered.
    pub replica_state: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Membership {
    pub view: u64,
    /// Ordinal of the leader's pod.
    pub leader: Option<u32>,
    /// Members (voters and learners) that are pods of this cluster, by ordinal.
    pub members: BTreeMap<u32, MemberState>,
    /// Members whose address is no pod of this cluster: (id, address).
    pub strangers: Vec<(u64, String)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberState {
    pub id: u64,
    /// Added but not yet promoted to voter.
    pub learner: bool,
    /// Answered, serves as a member and is caught up with the leader.
    pub healthy: bool,
}

/// The one next thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the StatefulSet with one pod, allowed to found the group.
    Bootstrap,
    /// The group exists: record it (pod 0 may no longer found) and create the objects.
    FinishBootstrap,
    /// Add the replica of pod i to the view as a learner.
    AddMember(u32),
    /// Set the StatefulSet to n pods (its new pods take identities already in the view).
    GrowStatefulSet(u32),
    /// Remove the replica of pod i from the view (a leader hands over first).
    RemoveMember(u32),
    /// Remove a member that is no pod of this cluster, by id.
    RemoveStranger(u64),
    /// Set the StatefulSet to n pods (the removed pods' members already left the view).
    ShrinkStatefulSet(u32),
    /// Delete the volume claim of pod i, which is gone and whose member left the view.
    DeleteClaim(u32),
    /// Delete pod i so it restarts with the current revision.
    RollPod(u32),
    /// Delete pod i and its volume claim: its replica was removed or halted and can only
    /// come back as a fresh process that rejoins under its name.
    ReplacePod(u32),
    /// Nothing to do until something changes.
    Wait(WaitReason),
    /// Converged.
    Done,
}

/// Why nothing can be done now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// Pod 0 was started to found the group and has not answered yet.
    Founding,
    /// The group exists but no replica answered.
    NoReplicaAnswers,
    /// A new member is still catching up.
    CatchingUp(u32),
    /// Pod i is not ready.
    PodNotReady(u32),
    /// The member of pod i does not answer or is behind.
    MemberUnhealthy(u32),
    /// A rolling update cannot continue while pod i is not ready.
    UpgradeBlocked(u32),
    /// Removing a member now would leave a view without a healthy majority, and the
    /// members short of it are not pods of this cluster.
    NoHealthyMajority,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Founding => write!(f, "waiting for pod 0 to found the group"),
            WaitReason::NoReplicaAnswers => write!(f, "no replica answers"),
            WaitReason::CatchingUp(i) => write!(f, "member {i} is catching up"),
            WaitReason::PodNotReady(i) => write!(f, "pod {i} is not ready"),
            WaitReason::MemberUnhealthy(i) => write!(f, "member {i} is unhealthy"),
            WaitReason::UpgradeBlocked(i) => {
                write!(f, "rolling update blocked: pod {i} is not ready")
            }
            WaitReason::NoHealthyMajority => write!(
                f,
                "removing a member now would leave no healthy majority in the view"
            ),
        }
    }
}

/// The next step towards `replicas` pods, all current, all voting members.
pub fn plan(replicas: u32, seen: &Observed) -> Step {
    let want = replicas.max(1);
    if !seen.bootstrapped {
        return match (&seen.membership, seen.statefulset_replicas) {
            // Someone answered: the group exists, whoever founded it.
            (Some(_), _) => Step::FinishBootstrap,
            (None, None | Some(0)) => Step::Bootstrap,
            (None, Some(_)) => Step::Wait(WaitReason::Founding),
        };
    }
    let Some(m) = &seen.membership else {
        // Nobody answers. If pods are missing (StatefulSet scaled down or deleted by
        // hand), bring back those the last known members need; they recover from disk:
        // scaling keeps claims (whenScaled: Retain), only DeleteClaim removes one.
        let pods = seen.statefulset_replicas.unwrap_or(0);
        if pods < seen.last_known_pods {
            return Step::GrowStatefulSet(seen.last_known_pods);
        }
        return Step::Wait(WaitReason::NoReplicaAnswers);
    };
    let pods = seen.statefulset_replicas.unwrap_or(0);
    let highest_member = m.members.keys().next_back().copied();

    // A wanted pod whose replica left the view or halted never serves again as it is.
    for (&i, pod) in &seen.pods {
        if i < want.min(pods) && is_dead(pod) && !m.members.get(&i).is_some_and(|s| s.healthy) {
            return Step::ReplacePod(i);
        }
    }
    // Scale-down, second half: pods whose members already left.
    let keep = want.max(highest_member.map_or(0, |h| h + 1));
    if pods > keep {
        return Step::ShrinkStatefulSet(keep);
    }
    // Scale-down, last part: the claim of a pod shrunk away whose member left the view. Its
    // data would only bring back a removed replica; a later pod at that ordinal starts
    // empty. Never a wanted ordinal, never a member's (a StatefulSet shrunk by hand keeps
    // its members and so their claims). Found again after a crash: the claim is observed.
    if let Some(&i) = seen
        .claims
        .iter()
        .find(|&&i| i >= pods && i >= want && !m.members.contains_key(&i))
    {
        return Step::DeleteClaim(i);
    }
    // Scale-down, first half: the highest member beyond the wanted count leaves the view,
    // but only if the view left behind can still decide (else it would be stuck for good).
    if let Some(h) = highest_member.filter(|h| *h >= want) {
        return match remaining_majority(m, Some(h), None) {
            Ok(()) => Step::RemoveMember(h),
            Err(reason) => Step::Wait(reason),
        };
    }
    if let Some((id, _)) = m.strangers.first() {
        return match remaining_majority(m, None, Some(*id)) {
            Ok(()) => Step::RemoveStranger(*id),
            Err(reason) => Step::Wait(reason),
        };
    }
    // Scale-up, second half: members added whose pods do not exist yet.
    if let Some(h) = highest_member.filter(|h| *h >= pods) {
        return Step::GrowStatefulSet(h + 1);
    }
    // Nothing changes membership while a member is not serving. During a rolling update,
    // trouble with a pod that was not just rolled blocks it.
    let rolling = rolling(seen);
    let stale = |i: u32| seen.pods.get(&i).is_some_and(|p| !p.current);
    for (&i, member) in &m.members {
        if member.learner {
            return Step::Wait(WaitReason::CatchingUp(i));
        }
        if !member.healthy {
            return Step::Wait(if rolling && stale(i) {
                WaitReason::UpgradeBlocked(i)
            } else {
                WaitReason::MemberUnhealthy(i)
            });
        }
    }
    for i in 0..pods {
        if !seen.pods.get(&i).is_some_and(|p| p.ready) {
            return Step::Wait(if rolling && stale(i) {
                WaitReason::UpgradeBlocked(i)
            } else {
                WaitReason::PodNotReady(i)
            });
        }
    }
    // Scale-up, first half: the next ordinal joins the view before its pod starts.
    if pods < want {
        return if m.members.contains_key(&pods) {
            Step::GrowStatefulSet(pods + 1)
        } else {
            Step::AddMember(pods)
        };
    }
    // Rolling update: followers first, highest ordinal first, the leader last.
    let stale: Vec<u32> = (0..pods)
        .rev()
        .filter(|i| seen.pods.get(i).is_some_and(|p| !p.current))
        .collect();
    if let Some(i) = stale
        .iter()
        .copied()
        .find(|i| Some(*i) != m.leader)
        .or_else(|| stale.first().copied())
    {
        return Step::RollPod(i);
    }
    Step::Done
}

/// Checks that the voters left after removing member `ordinal` or stranger `stranger`
/// include a healthy majority. Strangers count as voters of unknown health, so never as
/// healthy. Fails with the lowest unhealthy remaining member.
fn remaining_majority(
    m: &Membership,
    ordinal: Option<u32>,
    stranger: Option<u64>,
) -> Result<(), WaitReason> {
    let voters: Vec<(u32, &MemberState)> = m
        .members
        .iter()
        .filter(|(i, s)| !s.learner && Some(**i) != ordinal)
        .map(|(i, s)| (*i, s))
        .collect();
    let strangers = m
        .strangers
        .iter()
        .filter(|(id, _)| Some(*id) != stranger)
        .count();
    let healthy = voters.iter().filter(|(_, s)| s.healthy).count();
    if 2 * healthy > voters.len() + strangers {
        return Ok(());
    }
    Err(voters
        .iter()
        .find(|(_, s)| !s.healthy)
        .map_or(WaitReason::NoHealthyMajority, |(i, _)| {
            WaitReason::MemberUnhealthy(*i)
        }))
}

/// True when a pod's replica reports it can no longer serve.
fn is_dead(pod: &PodState) -> bool {
    pod.replica_state
        .as_deref()
        .is_some_and(|s| s == "removed" || s.starts_with("halted"))
}

/// True when the cluster is rolling pods: some pod is not on the current revision.
pub fn rolling(seen: &Observed) -> bool {
    seen.pods.values().any(|p| !p.current)
}
