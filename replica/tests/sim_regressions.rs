//! Bugs the simulator found, pinned down with a few direct calls on `Node`s so they stay
//! fixed without a seed (seeds change meaning whenever the simulator does).

use concoord::command::{ClientCommand, Operation};
use concoord::net::wire::{PeerFrame, ReplicaFrame, ReplyResult};
use concoord::node::{Action, Node, NodeConfig};
use concoord::paxos::Durable;
use concoord::state::StateMachine;

fn open_session(node: &mut Node, now: u64) -> Vec<Action> {
    let cmd = ClientCommand {
        session: 7,
        seq: 0,
        ack: 0,
        op: Operation::OpenSession,
        owner: None,
    };
    node.on_request(now, 1, cmd)
}

/// A replica that joined and crashed before it replayed its own add (its disk holds its
/// identity and nothing else) comes back as a member still catching up, not as a
/// removed one: it must not tell clients it was removed from the view.
#[test]
fn a_joiner_restarted_before_replaying_its_add_is_not_removed() {
    let cfg = NodeConfig::default();
    let (mut founder, _) = Node::found(
        "r1:7000",
        cfg.clone(),
        StateMachine::default(),
        vec![],
        1,
        0,
    );
    let joined = founder
        .on_join(0, 9, "r2:7000".into())
        .into_iter()
        .find_map(|a| match a {
            Action::JoinReply {
                frame: PeerFrame::Joined { id, genesis, .. },
                ..
            } => Some((id, genesis)),
            _ => None,
        });
    let (id, genesis) = joined.expect("a group of one adds a joiner at once");
    // The joiner starts, and crashes before it heard anything: its disk is empty.
    let restarted = Node::recover(
        "r2:7000",
        id,
        genesis,
        cfg,
        StateMachine::default(),
        &Durable::default(),
        2,
        10,
    );
    let mut node = restarted.expect("an empty log recovers");
    for a in open_session(&mut node, 10) {
        if let Action::Reply {
            frame: ReplicaFrame::Reply { result, .. },
            ..
        } = a
        {
            assert!(
                !matches!(result, ReplyResult::Unavailable { .. }),
                "the restarted joiner says: {result:?}"
            );
        }
    }
}
