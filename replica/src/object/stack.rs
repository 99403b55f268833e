//! `Stack()`: ConCoord's example stack: `append(item)`, `pop()` (returns the top item, as
//! Python's `list.pop`; IndexError when empty — ConCoord 1.1 dropped the item and returned
//! None), `get_size()`, `get_stack()` (bottom first).

use super::args::{arity, py_repr, value_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stack {
    items: Vec<Value>,
}

impl SimpleObject for Stack {
    const CLASS: &'static str = "Stack";
    const READ_ONLY: &'static [&'static str] = &["get_size", "get_stack"];

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "append" => {
                arity(method, args, &["item"], 1)?;
                self.items.push(value_at(args, 0, "item")?);
                Ok(Value::Nil)
            }
            "pop" => {
                arity(method, args, &[], 0)?;
                self.items
                    .pop()
                    .ok_or_else(|| ObjectError::index("pop from empty list"))
            }
            "get_size" => {
                arity(method, args, &[], 0)?;
                Ok(Value::from(self.items.len() as u64))
            }
            "get_stack" => {
                arity(method, args, &[], 0)?;
                Ok(Value::Array(self.items.clone()))
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    /// The items as a Python list, as ConCoord's Stack printed.
    fn show(&self) -> String {
        py_repr(&Value::Array(self.items.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn call(s: &mut Stack, method: &str, args: &[Value]) -> Outcome {
        s.invoke(c(1, 1), method, args, &mut Effects::default())
    }

    #[test]
    fn lifo() {
        let mut s = Stack::from_args(&[]).unwrap();
        assert_eq!(call(&mut s, "append", &[v(1)]), ok(Value::Nil));
        assert_eq!(call(&mut s, "append", &[v("two")]), ok(Value::Nil));
        assert_eq!(call(&mut s, "get_size", &[]), ok(2));
        assert_eq!(
            call(&mut s, "get_stack", &[]),
            ok(Value::Array(vec![v(1), v("two")]))
        );
        assert_eq!(s.describe(), "[1, 'two']");
        assert_eq!(call(&mut s, "pop", &[]), ok("two"));
        assert_eq!(call(&mut s, "pop", &[]), ok(1));
        assert_eq!(call(&mut s, "get_size", &[]), ok(0));
    }

    #[test]
    fn errors() {
        let mut s = Stack::default();
        assert_eq!(
            call(&mut s, "pop", &[]),
            err("IndexError", "pop from empty list")
        );
        assert_eq!(
            call(&mut s, "pop", &[v(0)]),
            err(
                "TypeError",
                "pop() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            call(&mut s, "push", &[v(0)]),
            err("AttributeError", "'Stack' object has no attribute 'push'")
        );
        assert!(Stack::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn save_restore() {
        let mut s = Stack::default();
        call(&mut s, "append", &[Value::Nil]);
        call(&mut s, "append", &[v(true)]);
        assert_eq!(Stack::restore(&s.save().unwrap()).unwrap(), s);
    }
}
