//! `Counter(value=0)`: ConCoord's example counter. As in ConCoord 1.1 the value is any
//! number: `Counter(2.5)` counts 2.5, 3.5, ... and prints with `%d` ("The counter value is 3").

use super::args::{Number, arity, number_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Counter {
    value: Number,
}

impl Counter {
    /// Python ints do not overflow; ours refuse to rather than wrap.
    fn add(&mut self, delta: i64) -> CallResult {
        self.value = self
            .value
            .plus(Number::Int(delta))
            .map_err(|_| ObjectError::new("OverflowError", "counter value out of range"))?;
        Ok(Value::Nil)
    }
}

impl SimpleObject for Counter {
    const CLASS: &'static str = "Counter";
    const READ_ONLY: &'static [&'static str] = &["getvalue"];

    fn from_args(args: &[Value]) -> Result<Counter, ObjectError> {
        arity(Self::CLASS, args, &["value"], 0)?;
        let value = if args.is_empty() {
            Number::Int(0)
        } else {
            number_at(args, 0, "value")?
        };
        Ok(Counter { value })
    }

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "increment" => {
                arity(method, args, &[], 0)?;
                self.add(1)
            }
            "decrement" => {
                arity(method, args, &[], 0)?;
                self.add(-1)
            }
            "getvalue" => {
                arity(method, args, &[], 0)?;
                Ok(self.value.to_value())
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    fn show(&self) -> String {
        format!("The counter value is {}", self.value.percent_d())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    #[test]
    fn counts() {
        let mut k = Counter::from_args(&[]).unwrap();
        let mut fx = Effects::default();
        assert_eq!(k.invoke(c(1, 1), "increment", &[], &mut fx), ok(Value::Nil));
        assert_eq!(k.invoke(c(1, 2), "increment", &[], &mut fx), ok(Value::Nil));
        assert_eq!(k.invoke(c(1, 3), "decrement", &[], &mut fx), ok(Value::Nil));
        assert_eq!(k.invoke(c(1, 4), "getvalue", &[], &mut fx), ok(1));
        assert_eq!(k.describe(), "The counter value is 1");
        let k = Counter::from_args(&[v(-5)]).unwrap();
        assert_eq!(k.describe(), "The counter value is -5");
    }

    #[test]
    fn errors() {
        let mut fx = Effects::default();
        let mut k = Counter::from_args(&[v(i64::MAX)]).unwrap();
        assert_eq!(
            k.invoke(c(1, 1), "increment", &[v(1)], &mut fx),
            err(
                "TypeError",
                "increment() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            k.invoke(c(1, 2), "increment", &[], &mut fx),
            err("OverflowError", "counter value out of range")
        );
        assert_eq!(k.invoke(c(1, 3), "getvalue", &[], &mut fx), ok(i64::MAX));
        assert_eq!(
            k.invoke(c(1, 4), "reset", &[], &mut fx),
            err(
                "AttributeError",
                "'Counter' object has no attribute 'reset'"
            )
        );
        assert_eq!(
            Counter::from_args(&[v("1")]).unwrap_err().message,
            "expected int or float for 'value', got str"
        );
        let mut low = Counter::from_args(&[v(i64::MIN)]).unwrap();
        assert_eq!(
            low.invoke(c(1, 5), "decrement", &[], &mut fx),
            err("OverflowError", "counter value out of range")
        );
    }

    #[test]
    fn a_float_value_counts_on_and_prints_with_percent_d() {
        let mut fx = Effects::default();
        let mut k = Counter::from_args(&[v(2.5)]).unwrap();
        assert_eq!(k.invoke(c(1, 1), "increment", &[], &mut fx), ok(Value::Nil));
        assert_eq!(k.invoke(c(1, 2), "getvalue", &[], &mut fx), ok(3.5));
        assert_eq!(k.describe(), "The counter value is 3");
        let k = Counter::from_args(&[v(-3.7)]).unwrap();
        assert_eq!(k.describe(), "The counter value is -3");
    }

    #[test]
    fn save_restore() {
        let k = Counter::from_args(&[v(2.5)]).unwrap();
        assert_eq!(Counter::restore(&k.save().unwrap()).unwrap(), k);
        let k = Counter::from_args(&[v(42)]).unwrap();
        assert_eq!(Counter::restore(&k.save().unwrap()).unwrap(), k);
    }
}
