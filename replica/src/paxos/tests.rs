//! Safety and liveness of the core under a hostile network, driven without any I/O.
//!
//! A tiny seeded network delivers messages late, twice, out of order or never, and cuts
//! links for a while. Safety: no two replicas ever execute different values in a slot.
//! Liveness: once the network heals, every command that clients keep retrying executes
//! everywhere.

use super::*;
use crate::command::{Command, Reconfig, ReplicaId, SlotValue, View};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy)]
struct Faults {
    loss: u64,
    dup: u64,
    max_delay: u64,
    partitions: bool,
}

struct Cluster {
    nodes: BTreeMap<ReplicaId, Paxos>,
    /// Executed values per replica, in slot order.
    executed: BTreeMap<ReplicaId, Vec<SlotValue>>,
    in_flight: Vec<(Millis, ReplicaId, ReplicaId, Message)>,
    cut: BTreeSet<(ReplicaId, ReplicaId)>,
    now: Millis,
    rng: Rng,
}

fn static_view(n: u64) -> View {
    View {
        number: 1,
        members: (1..=n).map(|i| (i, format!("r{i}"))).collect(),
        learners: BTreeMap::new(),
        next_id: n + 1,
        group: 0,
    }
}

fn cfg() -> Config {
    Config {
        heartbeat_ms: 20,
        election_ms: 150,
        retransmit_ms: 60,
        window: 4,
        max_batch: 8,
        catchup_batch: 16,
        ..Config::default()
    }
}

impl Cluster {
    fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, cfg())
    }

    fn with_config(n: u64, seed: u64, config: Config) -> Cluster {
        let view = static_view(n);
        let mut nodes = BTreeMap::new();
        let mut executed = BTreeMap::new();
        for id in 1..=n {
            nodes.insert(
                id,
                Paxos::new(id, view.clone(), config.clone(), seed ^ (id * 7919), 0),
            );
            executed.insert(id, Vec::new());
        }
        Cluster {
            nodes,
            executed,
            in_flight: Vec::new(),
            cut: BTreeSet::new(),
            now: 0,
            rng: Rng(seed | 1),
        }
    }

    fn handle(&mut self, from: ReplicaId, out: Vec<Output>, f: Faults) {
        for o in out {
            match o {
                Output::Send { to, msg } => {
                    if self.cut.contains(&(from, to)) || self.rng.chance(f.loss) {
                        continue;
                    }
                    let copies = if self.rng.chance(f.dup) { 2 } else { 1 };
                    for _ in 0..copies {
                        let at = self.now + 1 + self.rng.below(f.max_delay);
                        self.in_flight.push((at, from, to, msg.clone()));
                    }
                }
                Output::Execute { slot, value } => {
                    let log = self.executed.entry(from).or_default();
                    assert_eq!(
                        log.len() as u64,
                        slot,
                        "replica {from} executed out of order"
                    );
                    log.push(value);
                }
                Output::ViewChanged(_) | Output::Persist(_) | Output::Restore(_) => {}
            }
        }
    }

    fn step(&mut self, f: Faults) {
        self.now += 1;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|m| m.0 <= now);
        self.in_flight = later;
        for (_, from, to, msg) in due {
            if let Some(node) = self.nodes.get_mut(&to) {
                let mut out = Vec::new();
                node.receive(now, from, msg, &mut out);
                self.handle(to, out, f);
            }
        }
        let ids: Vec<ReplicaId> = self.nodes.keys().copied().collect();
        for id in ids {
            let mut out = Vec::new();
            if let Some(node) = self.nodes.get_mut(&id) {
                node.tick(now, &mut out);
            }
            self.handle(id, out, f);
        }
        if f.partitions && self.now.is_multiple_of(400) {
            self.cut.clear();
            if self.rng.chance(50) {
                // Isolate one replica from everyone, both ways.
                let victim = 1 + self.rng.below(self.nodes.len() as u64);
                for &other in self.nodes.keys() {
                    if other != victim {
                        self.cut.insert((victim, other));
                        self.cut.insert((other, victim));
                    }
                }
            }
        }
    }

    /// Offers a command to whichever replica leads, as a retrying client would.
    fn propose(&mut self, cmd: Command, f: Faults) -> bool {
        let now = self.now;
        let leader = self
            .nodes
            .iter()
            .find(|(_, n)| n.is_leader())
            .map(|(id, _)| *id);
        let Some(id) = leader else { return false };
        let mut out = Vec::new();
        let ok = self
            .nodes
            .get_mut(&id)
            .is_some_and(|n| n.propose(now, cmd, &mut out).is_ok());
        self.handle(id, out, f);
        ok
    }

    fn executed_commands(&self, id: ReplicaId) -> BTreeSet<u64> {
        let mut set = BTreeSet::new();
        for v in &self.executed[&id] {
            if let SlotValue::Batch(cmds) = v {
                for c in cmds {
                    if let Command::ExpireSession(n) = c {
                        set.insert(*n);
                    }
                }
            }
        }
        set
    }

    /// Safety: every pair of replicas agrees on every slot both executed.
    fn check_agreement(&self) {
        let logs: Vec<(&ReplicaId, &Vec<SlotValue>)> = self.executed.iter().collect();
        for (i, (a, la)) in logs.iter().enumerate() {
            for (b, lb) in &logs[i + 1..] {
                let n = la.len().min(lb.len());
                for s in 0..n {
                    assert_eq!(la[s], lb[s], "replicas {a} and {b} disagree on slot {s}");
                }
            }
        }
    }
}

fn run(seed: u64, n: u64, f: Faults, commands: u64) {
    let mut c = Cluster::new(n, seed);
    let mut next = 0u64;
    // Faulty phase: clients submit and resubmit commands while the network misbehaves.
    for _ in 0..3000 {
        c.step(f);
        if c.rng.chance(20) && next < commands && c.propose(Command::ExpireSession(next), f) {
            next += 1;
        }
        if c.now.is_multiple_of(97) {
            c.check_agreement();
        }
    }
    c.check_agreement();
    // Healed phase: no faults; clients retry what has not executed yet.
    let calm = Faults {
        loss: 0,
        dup: 0,
        max_delay: 3,
        partitions: false,
    };
    c.cut.clear();
    let wanted: BTreeSet<u64> = (0..next).collect();
    let mut done = false;
    for round in 0..200 {
        for _ in 0..50 {
            c.step(calm);
        }
        let all_have = c
            .nodes
            .keys()
            .all(|id| c.executed_commands(*id).is_superset(&wanted));
        let same_len = c
            .executed
            .values()
            .map(Vec::len)
            .collect::<BTreeSet<_>>()
            .len()
            == 1;
        if all_have && same_len {
            done = true;
            break;
        }
        let leader_id = c
            .nodes
            .iter()
            .find(|(_, n)| n.is_leader())
            .map(|(id, _)| *id);
        if let Some(l) = leader_id {
            let missing: Vec<u64> = wanted
                .difference(&c.executed_commands(l))
                .copied()
                .collect();
            if round % 4 == 3 {
                for m in missing {
                    c.propose(Command::ExpireSession(m), calm);
                }
            }
        }
    }
    c.check_agreement();
    assert!(done, "seed {seed}: cluster did not converge after healing");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn agreement_and_progress_under_loss_dup_reorder(seed in any::<u64>(), n in 1u64..=5) {
        run(seed, n, Faults { loss: 10, dup: 10, max_delay: 30, partitions: false }, 60);
    }

    #[test]
    fn agreement_and_progress_with_partitions(seed in any::<u64>()) {
        run(seed, 5, Faults { loss: 5, dup: 5, max_delay: 20, partitions: true }, 60);
    }
}

#[test]
fn a_lone_founder_decides_at_once() {
    let view = View::founded_by("a:1");
    let mut p = Paxos::new(1, view, cfg(), 1, 0);
    let mut out = Vec::new();
    p.found(0, vec![Command::ExpireSession(7)], &mut out);
    assert!(p.is_leader());
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Execute { slot: 0, .. }))
    );
    out.clear();
    p.propose(1, Command::ExpireSession(8), &mut out).unwrap();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Execute { slot: 1, .. }))
    );
}

#[test]
fn lower_ballots_are_refused_after_a_promise() {
    let mut p = Paxos::new(2, static_view(3), cfg(), 1, 0);
    let mut out = Vec::new();
    let high = Ballot {
        round: 5,
        leader: 3,
    };
    let low = Ballot {
        round: 4,
        leader: 1,
    };
    p.receive(
        1,
        3,
        Message::Prepare {
            ballot: high,
            from_slot: 0,
        },
        &mut out,
    );
    assert!(matches!(
        out.pop(),
        Some(Output::Send {
            msg: Message::Promise { .. },
            ..
        })
    ));
    for msg in [
        Message::Prepare {
            ballot: low,
            from_slot: 0,
        },
        Message::Accept {
            ballot: low,
            slot: 0,
            value: SlotValue::Noop,
            decided_upto: 0,
        },
        Message::Heartbeat {
            ballot: low,
            decided_upto: 0,
        },
    ] {
        p.receive(2, 1, msg, &mut out);
        assert!(
            matches!(out.pop(), Some(Output::Send { to: 1, msg: Message::Nack { promised, .. } }) if promised == high)
        );
    }
    // An equal ballot, from the promised leader, is accepted.
    p.receive(
        3,
        3,
        Message::Accept {
            ballot: high,
            slot: 0,
            value: SlotValue::Noop,
            decided_upto: 0,
        },
        &mut out,
    );
    assert!(matches!(
        out.pop(),
        Some(Output::Send {
            msg: Message::Accepted { .. },
            ..
        })
    ));
}

#[test]
fn new_leader_reproposes_the_highest_accepted_value() {
    // Replica 1 leads a 3-group; replica 2 accepted value A at ballot (1,1) in slot 0 and
    // replica 3 accepted nothing. When 3 takes over with 2's promise, slot 0 must get A.
    let view = static_view(3);
    let a = SlotValue::Batch(vec![Command::ExpireSession(42)]);
    let mut p3 = Paxos::new(3, view, cfg(), 3, 0);
    let mut out = Vec::new();
    p3.tick(10_000, &mut out);
    // It asks first (pre-vote); replica 2 misses the leader too.
    let round = out.iter().find_map(|o| match o {
        Output::Send {
            msg: Message::PreVote { round, .. },
            ..
        } => Some(*round),
        _ => None,
    });
    let Some(round) = round else {
        panic!("no pre-vote sent: {out:?}")
    };
    out.clear();
    p3.receive(
        10_000,
        2,
        Message::PreVoteReply {
            round,
            granted: true,
        },
        &mut out,
    );
    let ballot = match out.iter().find_map(|o| match o {
        Output::Send {
            msg: Message::Prepare { ballot, .. },
            ..
        } => Some(*ballot),
        _ => None,
    }) {
        Some(b) => b,
        None => panic!("no prepare sent: {out:?}"),
    };
    out.clear();
    let entry = AcceptedEntry {
        slot: 0,
        ballot: Ballot {
            round: 1,
            leader: 1,
        },
        value: a.clone(),
    };
    p3.receive(
        10_001,
        2,
        Message::Promise {
            ballot,
            accepted: vec![entry],
            decided_upto: 0,
        },
        &mut out,
    );
    assert!(p3.is_leader());
    let proposed = out.iter().find_map(|o| match o {
        Output::Send {
            msg: Message::Accept { slot: 0, value, .. },
            ..
        } => Some(value.clone()),
        _ => None,
    });
    assert_eq!(proposed, Some(a));
}

#[test]
fn membership_change_adds_a_replica_that_catches_up_and_votes() {
    let mut c = Cluster::new(3, 99);
    let f = Faults {
        loss: 0,
        dup: 0,
        max_delay: 3,
        partitions: false,
    };
    for _ in 0..500 {
        c.step(f);
    }
    for i in 0..20 {
        assert!(c.propose(Command::ExpireSession(i), f));
        c.step(f);
    }
    let leader = c
        .nodes
        .iter()
        .find(|(_, n)| n.is_leader())
        .map(|(id, _)| *id)
        .unwrap();
    let mut out = Vec::new();
    let now = c.now;
    c.nodes
        .get_mut(&leader)
        .unwrap()
        .propose_change(
            now,
            Reconfig::Add {
                addr: "r4".into(),
                replaces: None,
            },
            &mut out,
        )
        .unwrap();
    c.handle(leader, out, f);
    for _ in 0..300 {
        c.step(f);
    }
    let view = c.nodes[&leader].view().clone();
    // Added as a learner: it does not vote until it has caught up.
    assert_eq!(view.members.len(), 3);
    assert!(view.is_learner(4));
    assert_eq!(view.addr_of(4), Some("r4"));
    // The joiner replays from slot 0 with the genesis view.
    c.nodes
        .insert(4, Paxos::new(4, static_view(3), cfg(), 4, c.now));
    c.executed.insert(4, Vec::new());
    // Promoting the learner is a view change (a fresh phase 1): retry like a client.
    for i in 20..40 {
        let mut tries = 0;
        while !c.propose(Command::ExpireSession(i), f) && tries < 2000 {
            c.step(f);
            tries += 1;
        }
        c.step(f);
    }
    for _ in 0..500 {
        c.step(f);
    }
    c.check_agreement();
    let all: BTreeSet<u64> = (0..40).collect();
    assert!(
        c.executed_commands(4).is_superset(&all),
        "joiner did not catch up"
    );
    assert_eq!(
        c.nodes[&4].view().members.len(),
        4,
        "the caught-up learner was promoted"
    );
    // Now remove two old members; the remaining pair (one old, the joiner) still decides.
    for victim in [1u64, 2] {
        let leader = c
            .nodes
            .iter()
            .find(|(_, n)| n.is_leader())
            .map(|(id, _)| *id)
            .unwrap();
        let mut out = Vec::new();
        let now = c.now;
        c.nodes
            .get_mut(&leader)
            .unwrap()
            .propose_change(now, Reconfig::Remove { id: victim }, &mut out)
            .unwrap();
        c.handle(leader, out, f);
        for _ in 0..1500 {
            c.step(f);
            if c.nodes
                .values()
                .any(|n| n.is_leader() && !n.view().contains(victim))
            {
                break;
            }
        }
        c.nodes.remove(&victim);
        for _ in 0..1500 {
            c.step(f);
            if c.nodes.values().any(|n| n.is_leader()) {
                break;
            }
        }
    }
    for i in 40..50 {
        let mut tries = 0;
        while !c.propose(Command::ExpireSession(i), f) && tries < 2000 {
            c.step(f);
            tries += 1;
        }
    }
    for _ in 0..500 {
        c.step(f);
    }
    c.check_agreement();
    let all: BTreeSet<u64> = (0..50).collect();
    for id in [3u64, 4] {
        assert!(
            c.executed_commands(id).is_superset(&all),
            "replica {id} is missing commands"
        );
        assert_eq!(c.nodes[&id].view().members.len(), 2);
    }
}

#[test]
fn slots_executed_right_after_an_installed_snapshot_survive_a_restart() {
    // A follower accepts slots 5 and 6, learns they are decided (slots 0..5 missing),
    // then installs the leader's snapshot of slot 5 and executes 5 and 6 at once. The
    // checkpoint written with that snapshot must carry 5 and 6, or a crash forgets them.
    let view = static_view(3);
    let b = Ballot {
        round: 2,
        leader: 1,
    };
    let mut p = Paxos::new(2, view.clone(), cfg(), 5, 0);
    let mut out = Vec::new();
    for slot in [5u64, 6] {
        let value = SlotValue::Batch(vec![Command::ExpireSession(slot)]);
        p.receive(
            1,
            1,
            Message::Accept {
                ballot: b,
                slot,
                value,
                decided_upto: 0,
            },
            &mut out,
        );
    }
    p.receive(
        2,
        1,
        Message::Heartbeat {
            ballot: b,
            decided_upto: 7,
        },
        &mut out,
    );
    assert_eq!(p.decided_upto(), 0, "slots 0..5 are still missing");
    let snapshot = Snapshot {
        slot: 5,
        view: view.clone(),
        state: vec![],
    };
    p.receive(
        3,
        1,
        Message::InstallSnapshot {
            snapshot: snapshot.clone(),
        },
        &mut out,
    );
    assert_eq!(p.decided_upto(), 7);
    let durable = Durable {
        snapshot: Some(snapshot.clone()),
        records: p.checkpoint_records(5),
    };
    let mut replay = Vec::new();
    let q = Paxos::recover(2, view, cfg(), 5, 10, &durable, &mut replay);
    assert_eq!(q.decided_upto(), 7, "the restart remembers slots 5 and 6");
    let executed: Vec<u64> = replay
        .iter()
        .filter_map(|o| match o {
            Output::Execute { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert_eq!(executed, vec![5, 6]);
}

#[test]
fn a_stale_leader_steps_down_before_installing_a_snapshot() {
    let view = View::founded_by("a:1");
    let mut p = Paxos::new(1, view.clone(), cfg(), 1, 0);
    let mut out = Vec::new();
    p.found(0, vec![], &mut out);
    assert!(p.is_leader());
    let snapshot = Snapshot {
        slot: 50,
        view,
        state: vec![],
    };
    p.receive(1, 2, Message::InstallSnapshot { snapshot }, &mut out);
    assert!(!p.is_leader());
    assert_eq!(p.decided_upto(), 50);
}

// ----- a member that lost touch must not depose a healthy leader (pre-vote) -----

const CALM: Faults = Faults {
    loss: 0,
    dup: 0,
    max_delay: 3,
    partitions: false,
};

/// The leader and its ballot, when exactly one replica leads.
fn sole_leader(c: &Cluster) -> Option<(ReplicaId, Ballot)> {
    let leaders: Vec<(ReplicaId, Ballot)> = c
        .nodes
        .iter()
        .filter(|(_, n)| n.is_leader())
        .map(|(id, n)| (*id, n.ballot()))
        .collect();
    match leaders.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// A 3-replica group run calm until one leader is settled; returns it and a follower.
fn settled(seed: u64, config: Config) -> (Cluster, (ReplicaId, Ballot), ReplicaId) {
    let mut c = Cluster::with_config(3, seed, config);
    for _ in 0..2000 {
        c.step(CALM);
    }
    let Some(leader) = sole_leader(&c) else {
        panic!("seed {seed}: no single leader after 2 s of calm");
    };
    let follower = c.nodes.keys().copied().find(|id| *id != leader.0);
    let Some(follower) = follower else {
        panic!("no follower");
    };
    (c, leader, follower)
}

/// Runs `ms` steps, proposing now and then; returns the leader changes seen (a new leader
/// or a new ballot of the same leader, or a moment without a single leader).
fn run_counting_leader_changes(c: &mut Cluster, ms: u64, first: (ReplicaId, Ballot)) -> u64 {
    let mut changes = 0;
    let mut last = Some(first);
    for i in 0..ms {
        c.step(CALM);
        if i % 50 == 0 {
            c.propose(Command::ExpireSession(10_000 + c.now), CALM);
        }
        let now = sole_leader(c);
        if now != last {
            changes += 1;
            last = now;
        }
    }
    changes
}

/// Cuts `victim` off from everyone (both ways) for `ms`, then heals; returns the leader
/// changes during and after.
fn partition_then_heal(c: &mut Cluster, victim: ReplicaId, leader: (ReplicaId, Ballot)) -> u64 {
    for &other in c.nodes.keys() {
        if other != victim {
            c.cut.insert((victim, other));
            c.cut.insert((other, victim));
        }
    }
    // Twenty election timeouts and more, so the victim's timer fires again and again.
    let mut changes = run_counting_leader_changes(c, 3000, leader);
    c.cut.clear();
    changes += run_counting_leader_changes(c, 3000, sole_leader(c).unwrap_or(leader));
    changes
}

/// Restarts `victim` from scratch (its in-flight messages are lost), and keeps the leader's
/// messages from reaching it for `silence` ms, as when the leader's connection still points
/// at the old pod address; returns the leader changes.
fn restart_unheard(
    c: &mut Cluster,
    victim: ReplicaId,
    leader: (ReplicaId, Ballot),
    config: Config,
    silence: u64,
) -> u64 {
    c.in_flight.retain(|m| m.2 != victim);
    let now = c.now;
    c.nodes.insert(
        victim,
        Paxos::new(victim, static_view(3), config, victim * 31 + now, now),
    );
    c.executed.insert(victim, Vec::new());
    c.cut.insert((leader.0, victim));
    let mut changes = run_counting_leader_changes(c, silence, leader);
    c.cut.clear();
    changes += run_counting_leader_changes(c, 3000, sole_leader(c).unwrap_or(leader));
    changes
}

#[test]
fn a_partitioned_then_healed_member_causes_no_leader_change() {
    for seed in 1..=20 {
        let (mut c, leader, follower) = settled(seed, cfg());
        let changes = partition_then_heal(&mut c, follower, leader);
        assert_eq!(
            changes, 0,
            "seed {seed}: leader {leader:?} changed while a majority heard it"
        );
        assert_eq!(sole_leader(&c), Some(leader), "seed {seed}");
        // The healed member follows the leader and has caught up.
        assert_eq!(c.nodes[&follower].leader(), Some(leader.0), "seed {seed}");
        assert_eq!(
            c.nodes[&follower].decided_upto(),
            c.nodes[&leader.0].decided_upto(),
            "seed {seed}: the healed member did not catch up"
        );
        c.check_agreement();
    }
}

#[test]
fn a_restarted_member_causes_no_leader_change() {
    for seed in 1..=20 {
        let (mut c, leader, follower) = settled(seed, cfg());
        let changes = restart_unheard(&mut c, follower, leader, cfg(), 2000);
        assert_eq!(
            changes, 0,
            "seed {seed}: leader {leader:?} changed after a member restarted"
        );
        assert_eq!(sole_leader(&c), Some(leader), "seed {seed}");
        assert_eq!(c.nodes[&follower].leader(), Some(leader.0), "seed {seed}");
        c.check_agreement();
    }
}

/// The scenarios above do disrupt a group without pre-vote: they are not vacuous.
#[test]
fn without_pre_vote_the_same_scenarios_depose_the_leader() {
    let plain = Config {
        pre_vote: false,
        ..cfg()
    };
    let (mut c, leader, follower) = settled(7, plain.clone());
    assert!(partition_then_heal(&mut c, follower, leader) > 0);
    let (mut c, leader, follower) = settled(7, plain.clone());
    assert!(restart_unheard(&mut c, follower, leader, plain, 2000) > 0);
}

#[test]
fn a_dead_leader_is_still_replaced_with_pre_vote() {
    for seed in 1..=20 {
        let (mut c, leader, _) = settled(seed, cfg());
        // The leader is cut off both ways: the other two must elect one of themselves.
        for &other in c.nodes.keys() {
            if other != leader.0 {
                c.cut.insert((leader.0, other));
                c.cut.insert((other, leader.0));
            }
        }
        let mut new_leader = None;
        for _ in 0..3000 {
            c.step(CALM);
            let others: Vec<ReplicaId> = c
                .nodes
                .iter()
                .filter(|(id, n)| **id != leader.0 && n.is_leader())
                .map(|(id, _)| *id)
                .collect();
            if let [one] = others.as_slice() {
                new_leader = Some((*one, c.now));
                break;
            }
        }
        let Some((_, at)) = new_leader else {
            panic!("seed {seed}: no new leader within 3 s of the leader's loss");
        };
        // Heard last at 2000 ms; elected within a few election timeouts.
        assert!(
            at < 2000 + 6 * cfg().election_ms,
            "seed {seed}: elected at {at} ms"
        );
    }
}

#[test]
fn a_pre_vote_changes_nothing_at_the_voter() {
    let (mut c, leader, follower) = settled(3, cfg());
    let voter = c
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader.0 && *id != follower);
    let Some(voter) = voter else {
        panic!("no third replica")
    };
    let before = (c.nodes[&voter].promised(), c.nodes[&voter].leader());
    let now = c.now;
    let mut out = Vec::new();
    let round = before.0.round + 5;
    let node = c.nodes.get_mut(&voter).unwrap();
    node.receive(
        now,
        follower,
        Message::PreVote {
            round,
            decided_upto: 0,
        },
        &mut out,
    );
    // It hears the leader, so it refuses, and it keeps its promise and its leader.
    assert_eq!(
        out,
        vec![Output::Send {
            to: follower,
            msg: Message::PreVoteReply {
                round,
                granted: false
            }
        }]
    );
    assert_eq!((node.promised(), node.leader()), before);
    // Long after the leader went quiet it would grant, and still change nothing.
    let mut out = Vec::new();
    let later = now + 10 * cfg().election_ms;
    node.receive(
        later,
        follower,
        Message::PreVote {
            round,
            decided_upto: node.decided_upto(),
        },
        &mut out,
    );
    assert_eq!(
        out,
        vec![Output::Send {
            to: follower,
            msg: Message::PreVoteReply {
                round,
                granted: true
            }
        }]
    );
    assert_eq!((node.promised(), node.leader()), before);
}
