//! `Dict()`: a replicated string-keyed map, for users who would reach for etcd or ZooKeeper.
//!
//! `get(key, default=None)`, `set(key, value)`, `delete(key)` (KeyError when absent),
//! `keys()`/`values()`/`items()` in key order, `len()`, `contains(key)`, and
//! `cas(key, expected, new)` (alias `compare_and_set`): sets `key` to `new` only when its
//! current value equals `expected`, where `expected = None` means "the key is absent";
//! returns whether it did. Because of that, a CAS cannot match a stored None.

use super::args::{arity, opt_value, py_repr, str_at, value_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Dict {
    entries: BTreeMap<String, Value>,
}

fn key_error(key: &str) -> ObjectError {
    ObjectError::key(py_repr(&Value::from(key)))
}

impl Dict {
    fn cas(&mut self, args: &[Value]) -> CallResult {
        let key = str_at(args, 0, "key")?;
        let expected = value_at(args, 1, "expected")?;
        let new = value_at(args, 2, "new")?;
        let matches = match (self.entries.get(key), &expected) {
            (None, Value::Nil) => true,
            (Some(current), expected) => !expected.is_nil() && current == expected,
            (None, _) => false,
        };
        if matches {
            self.entries.insert(key.to_string(), new);
        }
        Ok(Value::Boolean(matches))
    }
}

impl SimpleObject for Dict {
    const CLASS: &'static str = "Dict";
    const READ_ONLY: &'static [&'static str] =
        &["get", "contains", "keys", "values", "items", "len"];

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "get" => {
                arity(method, args, &["key", "default"], 1)?;
                let key = str_at(args, 0, "key")?;
                Ok(self
                    .entries
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| opt_value(args, 1, Value::Nil)))
            }
            "set" => {
                arity(method, args, &["key", "value"], 2)?;
                let key = str_at(args, 0, "key")?;
                self.entries
                    .insert(key.to_string(), value_at(args, 1, "value")?);
                Ok(Value::Nil)
            }
            "delete" => {
                arity(method, args, &["key"], 1)?;
                let key = str_at(args, 0, "key")?;
                self.entries.remove(key).ok_or_else(|| key_error(key))?;
                Ok(Value::Nil)
            }
            "contains" => {
                arity(method, args, &["key"], 1)?;
                Ok(Value::Boolean(
                    self.entries.contains_key(str_at(args, 0, "key")?),
                ))
            }
            "cas" | "compare_and_set" => {
                arity(method, args, &["key", "expected", "new"], 3)?;
                self.cas(args)
            }
            "keys" => {
                arity(method, args, &[], 0)?;
                Ok(Value::Array(
                    self.entries
                        .keys()
                        .map(|k| Value::from(k.as_str()))
                        .collect(),
                ))
            }
            "values" => {
                arity(method, args, &[], 0)?;
                Ok(Value::Array(self.entries.values().cloned().collect()))
            }
            "items" => {
                arity(method, args, &[], 0)?;
                Ok(Value::Array(
                    self.entries
                        .iter()
                        .map(|(k, v)| Value::Array(vec![Value::from(k.as_str()), v.clone()]))
                        .collect(),
                ))
            }
            "len" => {
                arity(method, args, &[], 0)?;
                Ok(Value::from(self.entries.len() as u64))
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    fn show(&self) -> String {
        py_repr(&Value::Map(
            self.entries
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn call(d: &mut Dict, method: &str, args: &[Value]) -> Outcome {
        d.invoke(c(1, 1), method, args, &mut Effects::default())
    }

    #[test]
    fn get_set_delete_listing() {
        let mut d = Dict::from_args(&[]).unwrap();
        assert_eq!(call(&mut d, "get", &[v("a")]), ok(Value::Nil));
        assert_eq!(call(&mut d, "get", &[v("a"), v(0)]), ok(0));
        assert_eq!(call(&mut d, "set", &[v("b"), v(2)]), ok(Value::Nil));
        assert_eq!(call(&mut d, "set", &[v("a"), v("one")]), ok(Value::Nil));
        assert_eq!(call(&mut d, "get", &[v("a"), v(0)]), ok("one"));
        assert_eq!(call(&mut d, "contains", &[v("a")]), ok(true));
        assert_eq!(call(&mut d, "contains", &[v("z")]), ok(false));
        assert_eq!(call(&mut d, "len", &[]), ok(2));
        assert_eq!(
            call(&mut d, "keys", &[]),
            ok(Value::Array(vec![v("a"), v("b")]))
        );
        assert_eq!(
            call(&mut d, "values", &[]),
            ok(Value::Array(vec![v("one"), v(2)]))
        );
        assert_eq!(
            call(&mut d, "items", &[]),
            ok(Value::Array(vec![
                Value::Array(vec![v("a"), v("one")]),
                Value::Array(vec![v("b"), v(2)])
            ]))
        );
        assert_eq!(d.describe(), "{'a': 'one', 'b': 2}");
        assert_eq!(call(&mut d, "delete", &[v("a")]), ok(Value::Nil));
        assert_eq!(call(&mut d, "keys", &[]), ok(Value::Array(vec![v("b")])));
    }

    #[test]
    fn compare_and_set() {
        let mut d = Dict::default();
        assert_eq!(call(&mut d, "cas", &[v("k"), Value::Nil, v(1)]), ok(true));
        assert_eq!(call(&mut d, "cas", &[v("k"), Value::Nil, v(2)]), ok(false));
        assert_eq!(call(&mut d, "cas", &[v("k"), v(5), v(2)]), ok(false));
        assert_eq!(
            call(&mut d, "compare_and_set", &[v("k"), v(1), v(2)]),
            ok(true)
        );
        assert_eq!(call(&mut d, "get", &[v("k")]), ok(2));
        assert_eq!(call(&mut d, "cas", &[v("absent"), v(2), v(3)]), ok(false));
        // A stored None is not "absent".
        call(&mut d, "set", &[v("n"), Value::Nil]);
        assert_eq!(call(&mut d, "cas", &[v("n"), Value::Nil, v(1)]), ok(false));
    }

    #[test]
    fn errors() {
        let mut d = Dict::default();
        assert_eq!(call(&mut d, "delete", &[v("k")]), err("KeyError", "'k'"));
        assert_eq!(
            call(&mut d, "get", &[v(1)]),
            err("TypeError", "expected str for 'key', got int")
        );
        assert_eq!(
            call(&mut d, "set", &[v("k")]),
            err(
                "TypeError",
                "set() missing 1 required positional argument: 'value'"
            )
        );
        assert_eq!(
            call(&mut d, "cas", &[v("k"), v(1)]),
            err(
                "TypeError",
                "cas() missing 1 required positional argument: 'new'"
            )
        );
        assert_eq!(
            call(&mut d, "keys", &[v(1)]),
            err(
                "TypeError",
                "keys() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            call(&mut d, "watch", &[]),
            err("AttributeError", "'Dict' object has no attribute 'watch'")
        );
        assert!(Dict::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn save_restore() {
        let mut d = Dict::default();
        call(
            &mut d,
            "set",
            &[v("k"), Value::Array(vec![v(1), Value::F32(0.5)])],
        );
        assert_eq!(Dict::restore(&d.save().unwrap()).unwrap(), d);
    }
}
