//! `Membership()`: ConCoord's example membership set. `add(member)` (adding a present
//! member does nothing), `remove(member)` (KeyError when absent), and `members()`, which
//! lists the members in sorted order (ConCoord only printed them). Members are ints or
//! strings, the hashable values a msgpack client can send.

use super::args::{Key, arity, key_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    members: BTreeSet<Key>,
}

impl SimpleObject for Membership {
    const CLASS: &'static str = "Membership";
    const READ_ONLY: &'static [&'static str] = &["members"];

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "add" => {
                arity(method, args, &["member"], 1)?;
                self.members.insert(key_at(args, 0, "member")?);
                Ok(Value::Nil)
            }
            "remove" => {
                arity(method, args, &["member"], 1)?;
                let member = key_at(args, 0, "member")?;
                if !self.members.remove(&member) {
                    return Err(member.key_error());
                }
                Ok(Value::Nil)
            }
            "members" => {
                arity(method, args, &[], 0)?;
                Ok(Value::Array(
                    self.members.iter().map(Key::to_value).collect(),
                ))
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    fn show(&self) -> String {
        self.members
            .iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn call(m: &mut Membership, method: &str, args: &[Value]) -> Outcome {
        m.invoke(c(1, 1), method, args, &mut Effects::default())
    }

    #[test]
    fn add_remove_members() {
        let mut m = Membership::from_args(&[]).unwrap();
        assert_eq!(call(&mut m, "add", &[v("b")]), ok(Value::Nil));
        assert_eq!(call(&mut m, "add", &[v("a")]), ok(Value::Nil));
        assert_eq!(call(&mut m, "add", &[v("a")]), ok(Value::Nil));
        assert_eq!(call(&mut m, "add", &[v(3)]), ok(Value::Nil));
        assert_eq!(
            call(&mut m, "members", &[]),
            ok(Value::Array(vec![v(3), v("a"), v("b")]))
        );
        assert_eq!(m.describe(), "3 a b");
        assert_eq!(call(&mut m, "remove", &[v("a")]), ok(Value::Nil));
        assert_eq!(
            call(&mut m, "members", &[]),
            ok(Value::Array(vec![v(3), v("b")]))
        );
    }

    #[test]
    fn errors() {
        let mut m = Membership::default();
        assert_eq!(
            call(&mut m, "remove", &[v("ghost")]),
            err("KeyError", "'ghost'")
        );
        assert_eq!(
            call(&mut m, "add", &[v(1.0)]),
            err("TypeError", "expected str or int for 'member', got float")
        );
        assert_eq!(
            call(&mut m, "add", &[]),
            err(
                "TypeError",
                "add() missing 1 required positional argument: 'member'"
            )
        );
        assert_eq!(
            call(&mut m, "clear", &[]),
            err(
                "AttributeError",
                "'Membership' object has no attribute 'clear'"
            )
        );
        assert!(Membership::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn save_restore() {
        let mut m = Membership::default();
        call(&mut m, "add", &[v("x")]);
        call(&mut m, "add", &[v(2)]);
        assert_eq!(Membership::restore(&m.save().unwrap()).unwrap(), m);
    }
}
