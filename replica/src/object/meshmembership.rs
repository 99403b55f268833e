//! `MeshMembership()`: named groups of nodes that agree on their membership through epochs
//! (ConCoord's mesh membership object). Group and node names are ints or strings.
//!
//! Semantics:
//! - A group starts at epoch 1 with no members. Every membership change (a join, a removal
//!   after failure reports) bumps the epoch by one, and nothing else does.
//! - `add_group(name, minsize=1)` creates a group and returns True, or returns False and
//!   changes nothing when it exists. `minsize` (>= 1) is recorded and reported, not
//!   enforced, as in ConCoord. `remove_group(name)` deletes it; its parked `wait`s fail with
//!   KeyError.
//! - `approve_join(name, node, epoch)` returns `[joined, epoch]`. It adds `node` only if
//!   `epoch` is the group's current epoch (the caller saw the latest view); a stale epoch
//!   changes nothing and returns `[False, current]`. A node that is already a member gets
//!   `[True, current]` without a bump.
//! - `notify_failure(name, epoch, failed_node)` records that the calling client session
//!   suspects `failed_node` in `epoch`. Once distinct sessions reporting it make up at least
//!   half of the group's size, the node is removed and the epoch bumped. A stale epoch or a
//!   node that is not a member is a no-op. It returns the resulting `[members, epoch]`, so
//!   a caller sees whether its report was current. Reports reset on every epoch change.
//! - `wait(name, epoch=None)` parks until the epoch changes and completes with the new
//!   epoch. Given an `epoch` that is already stale, it returns the current one at once, so
//!   a change between reading the epoch and waiting is never missed.
//! - `check_member(name, node)` -> `[is_member, epoch]`; `get_group_members(name)` (sorted),
//!   `get_group_epoch(name)`, `get_group_state(name)` -> `[members, epoch]`. An unknown
//!   group is a KeyError everywhere except `add_group`.

use super::args::{Key, arity, int_at, key_at, opt_int};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Group {
    epoch: u64,
    minsize: u64,
    /// Each member with the sessions that reported it failed in this epoch.
    members: BTreeMap<Key, BTreeSet<SessionId>>,
    waiters: VecDeque<CallId>,
}

impl Group {
    fn new(minsize: u64) -> Group {
        Group {
            epoch: 1,
            minsize,
            members: BTreeMap::new(),
            waiters: VecDeque::new(),
        }
    }

    fn members(&self) -> Value {
        Value::Array(self.members.keys().map(Key::to_value).collect())
    }

    fn state(&self) -> Value {
        Value::Array(vec![self.members(), Value::from(self.epoch)])
    }

    fn is_current(&self, epoch: i64) -> bool {
        u64::try_from(epoch).ok() == Some(self.epoch)
    }

    /// The membership changed: a new epoch, fresh reports, and every waiter learns it.
    fn bump(&mut self, fx: &mut Effects) {
        self.epoch = self.epoch.saturating_add(1);
        for reports in self.members.values_mut() {
            reports.clear();
        }
        for call in self.waiters.drain(..) {
            fx.complete(call, Ok(Value::from(self.epoch)));
        }
    }

    fn report_failure(&mut self, reporter: SessionId, node: &Key, fx: &mut Effects) {
        let size = self.members.len();
        let Some(reports) = self.members.get_mut(node) else {
            return;
        };
        reports.insert(reporter);
        if reports.len() * 2 >= size {
            self.members.remove(node);
            self.bump(fx);
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshMembership {
    groups: BTreeMap<Key, Group>,
}

impl MeshMembership {
    pub fn from_args(args: &[Value]) -> Result<MeshMembership, ObjectError> {
        arity("MeshMembership", args, &[], 0)?;
        Ok(MeshMembership::default())
    }

    pub fn restore(bytes: &[u8]) -> Result<MeshMembership, ObjectError> {
        decode_state(bytes)
    }

    fn group(&mut self, args: &[Value]) -> Result<&mut Group, ObjectError> {
        let name = key_at(args, 0, "name")?;
        self.groups.get_mut(&name).ok_or_else(|| name.key_error())
    }

    fn dispatch(
        &mut self,
        call: CallId,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Result<Outcome, ObjectError> {
        let result = match method {
            "add_group" => {
                arity(method, args, &["name", "minsize"], 1)?;
                let name = key_at(args, 0, "name")?;
                let minsize = u64::try_from(opt_int(args, 1, "minsize", 1)?)
                    .ok()
                    .filter(|m| *m >= 1)
                    .ok_or_else(|| ObjectError::value("minsize must be >= 1"))?;
                let created = !self.groups.contains_key(&name);
                if created {
                    self.groups.insert(name, Group::new(minsize));
                }
                Value::Boolean(created)
            }
            "remove_group" => {
                arity(method, args, &["name"], 1)?;
                let name = key_at(args, 0, "name")?;
                let group = self.groups.remove(&name).ok_or_else(|| name.key_error())?;
                for waiter in group.waiters {
                    fx.complete(waiter, Err(name.key_error()));
                }
                Value::Nil
            }
            "approve_join" => {
                arity(method, args, &["name", "node", "epoch"], 3)?;
                let node = key_at(args, 1, "node")?;
                let epoch = int_at(args, 2, "epoch")?;
                let group = self.group(args)?;
                let joined = if group.members.contains_key(&node) {
                    true
                } else if group.is_current(epoch) {
                    group.members.insert(node, BTreeSet::new());
                    group.bump(fx);
                    true
                } else {
                    false
                };
                Value::Array(vec![Value::Boolean(joined), Value::from(group.epoch)])
            }
            "notify_failure" => {
                arity(method, args, &["name", "epoch", "failed_node"], 3)?;
                let epoch = int_at(args, 1, "epoch")?;
                let node = key_at(args, 2, "failed_node")?;
                let group = self.group(args)?;
                if group.is_current(epoch) {
                    group.report_failure(call.session, &node, fx);
                }
                group.state()
            }
            "wait" => {
                arity(method, args, &["name", "epoch"], 1)?;
                let seen = match args.get(1) {
                    None | Some(Value::Nil) => None,
                    Some(_) => Some(int_at(args, 1, "epoch")?),
                };
                let group = self.group(args)?;
                if let Some(seen) = seen
                    && !group.is_current(seen)
                {
                    return Ok(Outcome::Done(Ok(Value::from(group.epoch))));
                }
                group.waiters.push_back(call);
                return Ok(Outcome::Parked);
            }
            "check_member" => {
                arity(method, args, &["name", "node"], 2)?;
                let node = key_at(args, 1, "node")?;
                let group = self.group(args)?;
                Value::Array(vec![
                    Value::Boolean(group.members.contains_key(&node)),
                    Value::from(group.epoch),
                ])
            }
            "get_group_members" => {
                arity(method, args, &["name"], 1)?;
                self.group(args)?.members()
            }
            "get_group_epoch" => {
                arity(method, args, &["name"], 1)?;
                Value::from(self.group(args)?.epoch)
            }
            "get_group_state" => {
                arity(method, args, &["name"], 1)?;
                self.group(args)?.state()
            }
            _ => return Err(ObjectError::no_method(self.type_name(), method)),
        };
        Ok(Outcome::Done(Ok(result)))
    }
}

impl ReplicatedObject for MeshMembership {
    fn type_name(&self) -> &'static str {
        "MeshMembership"
    }

    fn invoke(&mut self, call: CallId, method: &str, args: &[Value], fx: &mut Effects) -> Outcome {
        Outcome::from_result(self.dispatch(call, method, args, fx))
    }

    /// One line per group, in ConCoord's format.
    fn describe(&self) -> String {
        self.groups
            .iter()
            .map(|(name, g)| {
                let members: Vec<String> = g.members.keys().map(Key::to_string).collect();
                format!(
                    "{name}: Epoch: {} Minimum Size: {} Members: {}",
                    g.epoch,
                    g.minsize,
                    members.join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn session_expired(&mut self, session: SessionId, _fx: &mut Effects) {
        for group in self.groups.values_mut() {
            group.waiters.retain(|c| c.session != session);
        }
    }

    fn drain_parked(&mut self) -> Vec<CallId> {
        self.groups
            .values_mut()
            .flat_map(|g| g.waiters.drain(..))
            .collect()
    }

    fn save(&self) -> Result<Vec<u8>, ObjectError> {
        encode_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn run(
        m: &mut MeshMembership,
        call: CallId,
        method: &str,
        args: &[Value],
    ) -> (Outcome, Vec<(CallId, super::super::CallResult)>) {
        let mut fx = Effects::default();
        let out = m.invoke(call, method, args, &mut fx);
        (out, fx.completed)
    }

    fn pair(a: Value, b: Value) -> Outcome {
        ok(Value::Array(vec![a, b]))
    }

    fn list(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| v(*s)).collect())
    }

    #[test]
    fn joins_bump_the_epoch_and_wake_waiters() {
        let mut m = MeshMembership::from_args(&[]).unwrap();
        assert_eq!(
            run(&mut m, c(1, 1), "add_group", &[v("g"), v(2)]).0,
            ok(true)
        );
        assert_eq!(run(&mut m, c(1, 2), "add_group", &[v("g")]).0, ok(false));
        assert_eq!(run(&mut m, c(1, 3), "get_group_epoch", &[v("g")]).0, ok(1));
        assert_eq!(run(&mut m, c(2, 1), "wait", &[v("g")]).0, Outcome::Parked);
        assert_eq!(
            run(&mut m, c(3, 1), "wait", &[v("g"), v(1)]).0,
            Outcome::Parked
        );
        let (out, woken) = run(&mut m, c(1, 4), "approve_join", &[v("g"), v("a"), v(1)]);
        assert_eq!(out, pair(v(true), v(2)));
        assert_eq!(woken, vec![(c(2, 1), Ok(v(2))), (c(3, 1), Ok(v(2)))]);
        // Stale epoch: rejected, nothing changes.
        assert_eq!(
            run(&mut m, c(1, 5), "approve_join", &[v("g"), v("b"), v(1)]).0,
            pair(v(false), v(2))
        );
        // Already a member: accepted without a bump.
        assert_eq!(
            run(&mut m, c(1, 6), "approve_join", &[v("g"), v("a"), v(1)]).0,
            pair(v(true), v(2))
        );
        assert_eq!(
            run(&mut m, c(1, 7), "approve_join", &[v("g"), v("b"), v(2)]).0,
            pair(v(true), v(3))
        );
        assert_eq!(
            run(&mut m, c(1, 8), "check_member", &[v("g"), v("a")]).0,
            pair(v(true), v(3))
        );
        assert_eq!(
            run(&mut m, c(1, 9), "check_member", &[v("g"), v("z")]).0,
            pair(v(false), v(3))
        );
        assert_eq!(
            run(&mut m, c(1, 10), "get_group_members", &[v("g")]).0,
            ok(list(&["a", "b"]))
        );
        assert_eq!(
            run(&mut m, c(1, 11), "get_group_state", &[v("g")]).0,
            pair(list(&["a", "b"]), v(3))
        );
        assert_eq!(m.describe(), "g: Epoch: 3 Minimum Size: 2 Members: a b");
        // A wait with a stale epoch answers at once.
        assert_eq!(run(&mut m, c(2, 2), "wait", &[v("g"), v(1)]).0, ok(3));
    }

    #[test]
    fn failures_remove_a_member_after_enough_reports() {
        let mut m = MeshMembership::default();
        run(&mut m, c(1, 1), "add_group", &[v("g")]);
        for (i, node) in ["a", "b", "c", "d"].into_iter().enumerate() {
            run(
                &mut m,
                c(1, 2 + i as u64),
                "approve_join",
                &[v("g"), v(node), v(1 + i as i64)],
            );
        }
        assert_eq!(run(&mut m, c(1, 9), "get_group_epoch", &[v("g")]).0, ok(5));
        run(&mut m, c(9, 1), "wait", &[v("g")]);
        // Stale epoch: a no-op that shows the current state.
        assert_eq!(
            run(&mut m, c(2, 1), "notify_failure", &[v("g"), v(4), v("d")]).0,
            pair(list(&["a", "b", "c", "d"]), v(5))
        );
        // One report of four members is not enough; the same session twice counts once.
        run(&mut m, c(2, 2), "notify_failure", &[v("g"), v(5), v("d")]);
        let (out, woken) = run(&mut m, c(2, 3), "notify_failure", &[v("g"), v(5), v("d")]);
        assert_eq!(out, pair(list(&["a", "b", "c", "d"]), v(5)));
        assert!(woken.is_empty());
        let (out, woken) = run(&mut m, c(3, 1), "notify_failure", &[v("g"), v(5), v("d")]);
        assert_eq!(out, pair(list(&["a", "b", "c"]), v(6)));
        assert_eq!(woken, vec![(c(9, 1), Ok(v(6)))]);
        // Unknown node: no-op.
        assert_eq!(
            run(&mut m, c(3, 2), "notify_failure", &[v("g"), v(6), v("zz")]).0,
            pair(list(&["a", "b", "c"]), v(6))
        );
        // Reports reset with the epoch: a report from epoch 5 no longer counts for "c".
        run(&mut m, c(2, 4), "notify_failure", &[v("g"), v(6), v("c")]);
        assert_eq!(
            run(&mut m, c(3, 3), "notify_failure", &[v("g"), v(6), v("c")]).0,
            pair(list(&["a", "b"]), v(7))
        );
    }

    #[test]
    fn remove_group_fails_its_waiters() {
        let mut m = MeshMembership::default();
        run(&mut m, c(1, 1), "add_group", &[v(5)]);
        run(&mut m, c(2, 1), "wait", &[v(5)]);
        let (out, woken) = run(&mut m, c(1, 2), "remove_group", &[v(5)]);
        assert_eq!(out, ok(Value::Nil));
        assert_eq!(woken, vec![(c(2, 1), Err(ObjectError::key("5")))]);
        assert_eq!(
            run(&mut m, c(1, 3), "get_group_epoch", &[v(5)]).0,
            err("KeyError", "5")
        );
    }

    #[test]
    fn errors() {
        let mut m = MeshMembership::default();
        for (method, args) in [
            ("remove_group", vec![v("x")]),
            ("approve_join", vec![v("x"), v("n"), v(1)]),
            ("notify_failure", vec![v("x"), v(1), v("n")]),
            ("wait", vec![v("x")]),
            ("check_member", vec![v("x"), v("n")]),
            ("get_group_members", vec![v("x")]),
            ("get_group_epoch", vec![v("x")]),
            ("get_group_state", vec![v("x")]),
        ] {
            assert_eq!(
                run(&mut m, c(1, 1), method, &args).0,
                err("KeyError", "'x'"),
                "{method}"
            );
        }
        assert_eq!(
            run(&mut m, c(1, 2), "add_group", &[v("g"), v(0)]).0,
            err("ValueError", "minsize must be >= 1")
        );
        run(&mut m, c(1, 3), "add_group", &[v("g")]);
        assert_eq!(
            run(&mut m, c(1, 4), "approve_join", &[v("g"), v("n"), v("1")]).0,
            err("TypeError", "expected int for 'epoch', got str")
        );
        assert_eq!(
            run(&mut m, c(1, 5), "approve_join", &[v("g"), v("n")]).0,
            err(
                "TypeError",
                "approve_join() missing 1 required positional argument: 'epoch'"
            )
        );
        assert_eq!(
            run(&mut m, c(1, 6), "wait", &[v("g"), v("e")]).0,
            err("TypeError", "expected int for 'epoch', got str")
        );
        assert_eq!(
            run(&mut m, c(1, 7), "approve_join", &[v("g"), v("n"), v(-1)]).0,
            pair(v(false), v(1))
        );
        assert_eq!(
            run(&mut m, c(1, 8), "join", &[]).0,
            err(
                "AttributeError",
                "'MeshMembership' object has no attribute 'join'"
            )
        );
        assert!(MeshMembership::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn expiry_drain_and_save_restore() {
        let mut m = MeshMembership::default();
        run(&mut m, c(1, 1), "add_group", &[v("g")]);
        run(&mut m, c(1, 2), "add_group", &[v("h")]);
        run(&mut m, c(2, 1), "wait", &[v("g")]);
        run(&mut m, c(3, 1), "wait", &[v("g"), Value::Nil]);
        run(&mut m, c(3, 2), "wait", &[v("h")]);
        m.session_expired(2, &mut Effects::default());
        let mut back = MeshMembership::restore(&m.save().unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.drain_parked(), vec![c(3, 1), c(3, 2)]);
        assert_eq!(
            m.describe(),
            "g: Epoch: 1 Minimum Size: 1 Members: \nh: Epoch: 1 Minimum Size: 1 Members: "
        );
    }
}
