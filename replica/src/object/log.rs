//! `Log()`: ConCoord's example log. `write` replaces the whole log with one entry,
//! `append` adds one, `read` returns the entries joined into one string, each as Python's
//! `str()` prints it, separated by spaces (as ConCoord 1.1: `read()` is `__str__()`).

use super::args::{arity, py_str, value_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Log {
    entries: Vec<Value>,
}

impl SimpleObject for Log {
    const CLASS: &'static str = "Log";
    const READ_ONLY: &'static [&'static str] = &["read"];

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "write" => {
                arity(method, args, &["entry"], 1)?;
                self.entries = vec![value_at(args, 0, "entry")?];
                Ok(Value::Nil)
            }
            "append" => {
                arity(method, args, &["entry"], 1)?;
                self.entries.push(value_at(args, 0, "entry")?);
                Ok(Value::Nil)
            }
            "read" => {
                arity(method, args, &[], 0)?;
                Ok(Value::from(self.show()))
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    fn show(&self) -> String {
        self.entries
            .iter()
            .map(py_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn call(log: &mut Log, method: &str, args: &[Value]) -> Outcome {
        log.invoke(c(1, 1), method, args, &mut Effects::default())
    }

    #[test]
    fn write_append_read() {
        let mut l = Log::from_args(&[]).unwrap();
        assert_eq!(call(&mut l, "read", &[]), ok(""));
        assert_eq!(call(&mut l, "append", &[v("a")]), ok(Value::Nil));
        assert_eq!(call(&mut l, "append", &[v(2)]), ok(Value::Nil));
        assert_eq!(call(&mut l, "append", &[v(2.5)]), ok(Value::Nil));
        assert_eq!(call(&mut l, "read", &[]), ok("a 2 2.5"));
        assert_eq!(l.describe(), "a 2 2.5");
        assert_eq!(call(&mut l, "write", &[v("fresh")]), ok(Value::Nil));
        assert_eq!(call(&mut l, "read", &[]), ok("fresh"));
    }

    #[test]
    fn errors() {
        let mut l = Log::default();
        assert_eq!(
            call(&mut l, "write", &[]),
            err(
                "TypeError",
                "write() missing 1 required positional argument: 'entry'"
            )
        );
        assert_eq!(
            call(&mut l, "read", &[v(1)]),
            err(
                "TypeError",
                "read() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            call(&mut l, "clear", &[]),
            err("AttributeError", "'Log' object has no attribute 'clear'")
        );
        assert!(Log::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn save_restore() {
        let mut l = Log::default();
        call(&mut l, "append", &[Value::Map(vec![(v("k"), v(1.5))])]);
        assert_eq!(Log::restore(&l.save().unwrap()).unwrap(), l);
    }
}
