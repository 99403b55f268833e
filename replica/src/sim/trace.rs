//! The run's trace, ToyFramework-style: one line per event, "time node event", so a failure
//! reads as a story and two runs of one seed can be compared byte for byte.

use crate::command::{ClientCommand, Command, Operation, Reconfig, SlotValue};
use crate::net::wire::{ClientFrame, MembershipReply, PeerFrame, ReplicaFrame, ReplyResult};
use crate::paxos::{Ballot, Message};
use std::fmt::{self, Write};

#[derive(Debug, Default)]
pub struct Trace {
    text: String,
    lines: usize,
}

impl Trace {
    pub fn line(&mut self, now_ms: u64, who: &str, what: fmt::Arguments<'_>) {
        let _ = writeln!(self.text, "{now_ms:>7}ms {who:<7} {what}");
        self.lines += 1;
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> &str {
        let mut start = self.text.len();
        let mut seen = 0;
        for (i, b) in self.text.bytes().enumerate().rev() {
            if b == b'\n' {
                if seen == n {
                    start = i + 1;
                    break;
                }
                seen += 1;
            }
            start = i;
        }
        &self.text[start..]
    }
}

pub struct B(pub Ballot);

impl fmt::Display for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0.round, self.0.leader)
    }
}

pub struct V<'a>(pub &'a SlotValue);

impl fmt::Display for V<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SlotValue::Noop => write!(f, "noop"),
            SlotValue::Reconfig(Reconfig::Add { addr, .. }) => write!(f, "add({addr})"),
            SlotValue::Reconfig(Reconfig::Promote { id }) => write!(f, "promote({id})"),
            SlotValue::Reconfig(Reconfig::Remove { id }) => write!(f, "remove({id})"),
            SlotValue::Batch(cmds) => {
                write!(f, "[")?;
                for (i, c) in cmds.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    match c {
                        Command::Client(c) => write!(f, "{}/{}", short(c.session), c.seq)?,
                        Command::ExpireSession(s) => write!(f, "expire:{}", short(*s))?,
                        Command::EnsureObject { name, .. } => write!(f, "ensure:{name}")?,
                        Command::EnsureType { module, class, .. } => {
                            write!(f, "define:{module}.{class}")?
                        }
                    }
                }
                write!(f, "]")
            }
        }
    }
}

/// Sessions are random 64-bit numbers; four hex digits tell them apart in a trace.
pub fn short(session: u64) -> String {
    format!("{:04x}", session & 0xffff)
}

pub struct M<'a>(pub &'a Message);

impl fmt::Display for M<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Message::Prepare { ballot, from_slot } => {
                write!(f, "Prepare b={} from={from_slot}", B(*ballot))
            }
            Message::Promise {
                ballot,
                accepted,
                decided_upto,
            } => write!(
                f,
                "Promise b={} accepted={} decided={decided_upto}",
                B(*ballot),
                accepted.len()
            ),
            Message::Nack { ballot, promised } => {
                write!(f, "Nack b={} promised={}", B(*ballot), B(*promised))
            }
            Message::Accept {
                ballot,
                slot,
                value,
                decided_upto,
            } => write!(
                f,
                "Accept b={} slot={slot} {} decided={decided_upto}",
                B(*ballot),
                V(value)
            ),
            Message::Accepted { ballot, slot } => {
                write!(f, "Accepted b={} slot={slot}", B(*ballot))
            }
            Message::Heartbeat {
                ballot,
                decided_upto,
            } => write!(f, "Heartbeat b={} decided={decided_upto}", B(*ballot)),
            Message::HeartbeatAck {
                ballot,
                decided_upto,
            } => write!(f, "HeartbeatAck b={} decided={decided_upto}", B(*ballot)),
            Message::CatchUp { from_slot } => write!(f, "CatchUp from={from_slot}"),
            Message::Decided { first_slot, values } => write!(
                f,
                "Decided slots {first_slot}..{}",
                first_slot + values.len() as u64
            ),
            Message::InstallSnapshot { snapshot } => write!(
                f,
                "InstallSnapshot slot={} view={}",
                snapshot.slot, snapshot.view.number
            ),
            Message::TakeOver { ballot } => write!(f, "TakeOver b={}", B(*ballot)),
            Message::PreVote {
                round,
                decided_upto,
            } => write!(f, "PreVote r={round} d={decided_upto}"),
            Message::PreVoteReply { round, granted } => {
                write!(f, "PreVoteReply r={round} granted={granted}")
            }
        }
    }
}

pub fn op(o: &Operation) -> String {
    match o {
        Operation::OpenSession => "open-session".into(),
        Operation::CloseSession => "close-session".into(),
        Operation::Call {
            object,
            method,
            args,
        } => {
            let args: Vec<String> = args.iter().map(crate::object::args::py_repr).collect();
            format!("{object}.{method}({})", args.join(", "))
        }
        Operation::Create { name, .. } => format!("create {name}"),
        Operation::Delete { name } => format!("delete {name}"),
        Operation::List => "list".into(),
        Operation::DefineType {
            module,
            class,
            replace,
            ..
        } => format!(
            "define {module}.{class}{}",
            if *replace { " (replace)" } else { "" }
        ),
        Operation::ListTypes => "list-types".into(),
        Operation::ShowType { name } => format!("show-type {name}"),
    }
}

pub fn cmd(c: &ClientCommand) -> String {
    format!("{}/{} ack={} {}", short(c.session), c.seq, c.ack, op(&c.op))
}

pub fn result(r: &ReplyResult) -> String {
    match r {
        ReplyResult::Ok(v) => crate::object::args::py_repr(v),
        ReplyResult::Err { kind, message } => format!("{kind}: {message}"),
        ReplyResult::NotLeader { leader } => format!("NotLeader({})", opt(leader)),
        ReplyResult::SessionExpired => "SessionExpired".into(),
        ReplyResult::Unavailable { reason } => format!("Unavailable({reason})"),
    }
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

pub fn client_frame(f: &ClientFrame) -> String {
    match f {
        ClientFrame::Request(c) => format!("request {}", cmd(c)),
        ClientFrame::KeepAlive { session } => format!("keep-alive {}", short(*session)),
        ClientFrame::Status => "status?".into(),
        ClientFrame::Membership(m) => format!("membership {m:?}"),
        ClientFrame::Fault(x) => format!("fault {x:?}"),
    }
}

pub fn replica_frame(f: &ReplicaFrame) -> String {
    match f {
        ReplicaFrame::Reply {
            session,
            seq,
            result: r,
        } => format!("reply {}/{seq} {}", short(*session), result(r)),
        ReplicaFrame::KeepAliveAck { session, alive } => {
            format!("keep-alive-ack {} alive={alive}", short(*session))
        }
        ReplicaFrame::NotLeader { leader } => format!("not-leader({})", opt(leader)),
        ReplicaFrame::Status(s) => format!("status view={} leader={:?}", s.view.number, s.leader),
        ReplicaFrame::Membership(m) => match m {
            MembershipReply::Done { view } => format!("membership done: view {}", view.number),
            MembershipReply::NotLeader { leader } => {
                format!("membership not-leader({})", opt(leader))
            }
            MembershipReply::Refused { reason } => format!("membership refused: {reason}"),
        },
        ReplicaFrame::Faults(r) => format!("faults {r:?}"),
    }
}

pub fn peer_frame(f: &PeerFrame) -> String {
    match f {
        PeerFrame::Joined { id, view, .. } => format!("joined as {id} in view {}", view.number),
        PeerFrame::JoinRedirect { leader } => format!("join redirect({})", opt(leader)),
        PeerFrame::JoinRefused { reason } => format!("join refused: {reason}"),
        PeerFrame::Join { addr } => format!("join {addr}"),
        PeerFrame::Paxos(m) => M(m).to_string(),
    }
}
