//! `MeshMembership()`: named groups of nodes that agree on their membership through epochs
//! (ConCoord's mesh membership object). Group and node names are ints or strings.
//!
//! Semantics, ConCoord 1.1's (its return values and errors, method by method):
//! - A group starts at epoch 1 with no members. `add_group(name, minsize)` creates it and
//!   returns None (an existing group is left as it is). `minsize` is recorded and printed,
//!   not enforced. `remove_group(name)` deletes it; its parked `wait`s fail with KeyError.
//! - `approve_join(name, node, epoch)` returns `[joined, epoch]`: when `epoch` is the
//!   group's current one, the epoch moves on, `node` becomes a member (with no strikes) and
//!   the waiters wake; a stale epoch changes nothing and returns `[False, current]`.
//! - `notify_failure(name, epoch, node)` counts a strike against `node`: with a stale epoch
//!   it changes nothing and returns `[{member: strikes}, epoch]`; a node that is not a member
//!   is a KeyError; once the node's strikes reach half the group's size it is removed, the
//!   epoch moves on, waiters wake, and `[{member: strikes}, epoch]` is returned; below that,
//!   None. (1.1 crashed with a NameError at the removal; we do what it meant.)
//! - `wait(name, epoch=None)` parks until the epoch changes and completes with the new
//!   epoch (1.1's `wait` crashed with a NameError). Given an `epoch` that is already stale,
//!   it returns the current one at once, so a change between reading the epoch and waiting
//!   is never missed.
//! - `check_member(name, node)` -> `[is_member, epoch]`; `get_group_members(name)`,
//!   `get_group_epoch(name)`, `get_group_state(name)` -> `[members, epoch]`. An unknown
//!   group is a KeyError (`'name'`) everywhere except `add_group`.

use super::args::{Key, arity, int_at, key_at, opt_int};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Group {
    epoch: u64,
    minsize: i64,
    /// Each member with its strikes (failure reports), as 1.1 kept them.
    members: BTreeMap<Key, u64>,
    waiters: VecDeque<CallId>,
}

impl Group {
    fn new(minsize: i64) -> Group {
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

    /// `[{member: strikes}, epoch]`, what 1.1's notify_failure returned.
    fn strikes_and_epoch(&self) -> Value {
        let strikes = self
            .members
            .iter()
            .map(|(node, n)| (node.to_value(), Value::from(*n)))
            .collect();
        Value::Array(vec![Value::Map(strikes), Value::from(self.epoch)])
    }

    fn is_current(&self, epoch: i64) -> bool {
        u64::try_from(epoch).ok() == Some(self.epoch)
    }

    /// The membership changed: a new epoch, and every waiter learns it.
    fn bump(&mut self, fx: &mut Effects) {
        self.epoch = self.epoch.saturating_add(1);
        for call in self.waiters.drain(..) {
            fx.complete(call, Ok(Value::from(self.epoch)));
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
        let name = key_at(args, 0, "gname")?;
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
                arity(method, args, &["gname", "minsize"], 1)?;
                let name = key_at(args, 0, "gname")?;
                let minsize = opt_int(args, 1, "minsize", 1)?;
                self.groups
                    .entry(name)
                    .or_insert_with(|| Group::new(minsize));
                Value::Nil
            }
            "remove_group" => {
                arity(method, args, &["gname"], 1)?;
                let name = key_at(args, 0, "gname")?;
                let group = self.groups.remove(&name).ok_or_else(|| name.key_error())?;
                for waiter in group.waiters {
                    fx.complete(waiter, Err(name.key_error()));
                }
                Value::Nil
            }
            "approve_join" => {
                arity(method, args, &["gname", "node", "epochno"], 3)?;
                let node = key_at(args, 1, "node")?;
                let epoch = int_at(args, 2, "epochno")?;
                let group = self.group(args)?;
                let joined = group.is_current(epoch);
                if joined {
                    group.members.entry(node).or_insert(0);
                    group.bump(fx);
                }
                Value::Array(vec![Value::Boolean(joined), Value::from(group.epoch)])
            }
            "notify_failure" => {
                arity(method, args, &["gname", "epoch", "failednode"], 3)?;
                let epoch = int_at(args, 1, "epoch")?;
                let node = key_at(args, 2, "failednode")?;
                let group = self.group(args)?;
                if !group.is_current(epoch) {
                    return Ok(Outcome::Done(Ok(group.strikes_and_epoch())));
                }
                let size = group.members.len();
                let strikes = group
                    .members
                    .get_mut(&node)
                    .ok_or_else(|| node.key_error())?;
                *strikes = strikes.saturating_add(1);
                // 1.1: strikes >= len(members) / 2.0
                if u128::from(*strikes) * 2 >= size as u128 {
                    group.members.remove(&node);
                    group.bump(fx);
                    group.strikes_and_epoch()
                } else {
                    Value::Nil
                }
            }
            "wait" => {
                arity(method, args, &["gname", "epoch"], 1)?;
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
                arity(method, args, &["gname", "node"], 2)?;
                let node = key_at(args, 1, "node")?;
                let group = self.group(args)?;
                Value::Array(vec![
                    Value::Boolean(group.members.contains_key(&node)),
                    Value::from(group.epoch),
                ])
            }
            "get_group_members" => {
                arity(method, args, &["gname"], 1)?;
                self.group(args)?.members()
            }
            "get_group_epoch" => {
                arity(method, args, &["gname"], 1)?;
                Value::from(self.group(args)?.epoch)
            }
            "get_group_state" => {
                arity(method, args, &["gname"], 1)?;
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

    fn is_read_only(&self, method: &str) -> bool {
        matches!(
            method,
            "check_member" | "get_group_members" | "get_group_epoch" | "get_group_state"
        )
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

    fn pair(a: impl Into<Value>, b: impl Into<Value>) -> Value {
        Value::Array(vec![a.into(), b.into()])
    }

    fn strikes(entries: &[(&str, u64)], epoch: u64) -> Value {
        let map = entries.iter().map(|(n, s)| (v(*n), v(*s))).collect();
        pair(Value::Map(map), epoch)
    }

    #[test]
    fn groups_join_by_epoch() {
        let mut m = MeshMembership::from_args(&[]).unwrap();
        assert_eq!(
            run(&mut m, c(1, 1), "add_group", &[v("g"), v(2)]).0,
            ok(Value::Nil)
        );
        assert_eq!(
            run(&mut m, c(1, 2), "add_group", &[v("g"), v(5)]).0,
            ok(Value::Nil)
        );
        assert_eq!(run(&mut m, c(1, 3), "get_group_epoch", &[v("g")]).0, ok(1));
        assert_eq!(
            run(&mut m, c(1, 4), "approve_join", &[v("g"), v("n1"), v(1)]).0,
            ok(pair(true, 2))
        );
        // A stale epoch changes nothing.
        assert_eq!(
            run(&mut m, c(1, 5), "approve_join", &[v("g"), v("n2"), v(1)]).0,
            ok(pair(false, 2))
        );
        // A member joining again at the current epoch moves the epoch on, as in 1.1.
        assert_eq!(
            run(&mut m, c(1, 6), "approve_join", &[v("g"), v("n1"), v(2)]).0,
            ok(pair(true, 3))
        );
        assert_eq!(
            run(&mut m, c(1, 7), "get_group_state", &[v("g")]).0,
            ok(pair(Value::Array(vec![v("n1")]), 3))
        );
        assert_eq!(
            run(&mut m, c(1, 8), "check_member", &[v("g"), v("zz")]).0,
            ok(pair(false, 3))
        );
        assert_eq!(m.describe(), "g: Epoch: 3 Minimum Size: 2 Members: n1");
        assert_eq!(
            run(&mut m, c(1, 9), "remove_group", &[v("g")]).0,
            ok(Value::Nil)
        );
        assert_eq!(
            run(&mut m, c(1, 10), "get_group_members", &[v("g")]).0,
            err("KeyError", "'g'")
        );
    }

    #[test]
    fn failure_reports_remove_a_node_at_half_the_group() {
        let mut m = MeshMembership::default();
        run(&mut m, c(1, 1), "add_group", &[v("g"), v(2)]);
        for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
            let epoch = i as i64 + 1;
            run(
                &mut m,
                c(1, 2 + i as u64),
                "approve_join",
                &[v("g"), v(*node), v(epoch)],
            );
        }
        // Stale epoch: the strikes and the current epoch, nothing counted.
        assert_eq!(
            run(&mut m, c(1, 5), "notify_failure", &[v("g"), v(1), v("n1")]).0,
            ok(strikes(&[("n1", 0), ("n2", 0), ("n3", 0)], 4))
        );
        assert_eq!(
            run(&mut m, c(1, 6), "notify_failure", &[v("g"), v(4), v("zz")]).0,
            err("KeyError", "'zz'")
        );
        // One strike of three members: below half, None.
        assert_eq!(
            run(&mut m, c(1, 7), "notify_failure", &[v("g"), v(4), v("n1")]).0,
            ok(Value::Nil)
        );
        // The second reaches 1.5: removed, a new epoch, a waiter wakes with it.
        assert_eq!(run(&mut m, c(2, 1), "wait", &[v("g")]).0, Outcome::Parked);
        let (out, woken) = run(&mut m, c(1, 8), "notify_failure", &[v("g"), v(4), v("n1")]);
        assert_eq!(out, ok(strikes(&[("n2", 0), ("n3", 0)], 5)));
        assert_eq!(woken, vec![(c(2, 1), Ok(v(5)))]);
        assert_eq!(
            run(&mut m, c(1, 9), "check_member", &[v("g"), v("n1")]).0,
            ok(pair(false, 5))
        );
    }

    #[test]
    fn wait_parks_until_the_epoch_changes() {
        let mut m = MeshMembership::default();
        run(&mut m, c(1, 1), "add_group", &[v("g"), v(1)]);
        assert_eq!(run(&mut m, c(2, 1), "wait", &[v("g")]).0, Outcome::Parked);
        // A stale epoch answers at once.
        assert_eq!(run(&mut m, c(3, 1), "wait", &[v("g"), v(0)]).0, ok(1));
        let (out, woken) = run(&mut m, c(1, 2), "approve_join", &[v("g"), v("n1"), v(1)]);
        assert_eq!(out, ok(pair(true, 2)));
        assert_eq!(woken, vec![(c(2, 1), Ok(v(2)))]);
        // A removed group fails its waiters.
        assert_eq!(run(&mut m, c(2, 2), "wait", &[v("g")]).0, Outcome::Parked);
        let (_, woken) = run(&mut m, c(1, 3), "remove_group", &[v("g")]);
        assert_eq!(woken, vec![(c(2, 2), Err(ObjectError::key("'g'")))]);
        assert_eq!(
            run(&mut m, c(1, 4), "wait", &[v("g")]).0,
            err("KeyError", "'g'")
        );
    }

    #[test]
    fn session_expiry_drops_its_waiters_and_state_round_trips() {
        let mut m = MeshMembership::default();
        run(&mut m, c(1, 1), "add_group", &[v("g"), v(1)]);
        run(&mut m, c(2, 1), "wait", &[v("g")]);
        m.session_expired(2, &mut Effects::default());
        let (_, woken) = run(&mut m, c(1, 2), "approve_join", &[v("g"), v(7), v(1)]);
        assert!(woken.is_empty());
        let restored = MeshMembership::restore(&m.save().unwrap()).unwrap();
        assert_eq!(restored, m);
        assert!(m.drain_parked().is_empty());
    }
}
