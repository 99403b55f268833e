//! Turning result values into Rust types for the typed proxies. A result of the wrong type
//! is a protocol error, never a panic.

use super::ClientError;
use crate::command::Value;
use std::collections::BTreeMap;

fn wrong(expected: &str, got: &Value) -> ClientError {
    ClientError::Protocol(format!("expected {expected} as the result, got {got}"))
}

pub fn int(v: Value) -> Result<i64, ClientError> {
    match &v {
        Value::Integer(i) => i.as_i64().ok_or_else(|| wrong("an i64", &v)),
        _ => Err(wrong("an integer", &v)),
    }
}

/// An int or a float, as f64 (Bank balances are either).
pub fn number(v: Value) -> Result<f64, ClientError> {
    match &v {
        Value::Integer(i) => i.as_f64().ok_or_else(|| wrong("a number", &v)),
        Value::F32(f) => Ok(f64::from(*f)),
        Value::F64(f) => Ok(*f),
        _ => Err(wrong("a number", &v)),
    }
}

/// `[{member: strikes}, epoch]`, as MeshMembership.notify_failure answers.
pub fn strikes_and_epoch(v: Value) -> Result<(Vec<(Value, i64)>, i64), ClientError> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            let mut it = items.into_iter();
            let (Some(Value::Map(strikes)), Some(epoch)) = (it.next(), it.next()) else {
                return Err(ClientError::Protocol(
                    "expected [{member: strikes}, epoch]".into(),
                ));
            };
            let strikes = strikes
                .into_iter()
                .map(|(node, n)| Ok((node, int(n)?)))
                .collect::<Result<_, ClientError>>()?;
            Ok((strikes, int(epoch)?))
        }
        other => Err(wrong("[{member: strikes}, epoch]", &other)),
    }
}

/// Whether an `acquire` got what it asked for: anything but False (Lock.acquire answers
/// None, RLock's re-entry 1, Semaphore True).
pub fn acquired(v: &Value) -> bool {
    !matches!(v, Value::Boolean(false))
}

/// Python truthiness, since ConCoord methods return "something true" as often as `True`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Boolean(b) => *b,
        Value::Integer(i) => i.as_i64() != Some(0),
        Value::F32(f) => *f != 0.0,
        Value::F64(f) => *f != 0.0,
        Value::String(s) => !s.as_bytes().is_empty(),
        Value::Binary(b) => !b.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Map(m) => !m.is_empty(),
        Value::Ext(..) => true,
    }
}

pub fn string(v: Value) -> Result<String, ClientError> {
    match v {
        Value::String(s) => s
            .into_str()
            .ok_or_else(|| ClientError::Protocol("result string is not UTF-8".into())),
        other => Err(wrong("a string", &other)),
    }
}

/// A list; nil counts as empty (an object with nothing to list may say None).
pub fn list(v: Value) -> Result<Vec<Value>, ClientError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(wrong("a list", &other)),
    }
}

/// A `[flag, int]` pair, as MeshMembership answers `(joined, epoch)`.
pub fn flag_and_int(v: Value) -> Result<(bool, i64), ClientError> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            let mut it = items.into_iter();
            let (Some(flag), Some(n)) = (it.next(), it.next()) else {
                return Err(ClientError::Protocol("expected a pair".into()));
            };
            Ok((truthy(&flag), int(n)?))
        }
        other => Err(wrong("a [flag, integer] pair", &other)),
    }
}

/// A `[list, int]` pair, as MeshMembership answers `(members, epoch)`.
pub fn list_and_int(v: Value) -> Result<(Vec<Value>, i64), ClientError> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            let mut it = items.into_iter();
            let (Some(items), Some(n)) = (it.next(), it.next()) else {
                return Err(ClientError::Protocol("expected a pair".into()));
            };
            Ok((list(items)?, int(n)?))
        }
        other => Err(wrong("a [list, integer] pair", &other)),
    }
}

pub fn string_map(v: Value) -> Result<BTreeMap<String, String>, ClientError> {
    match v {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Ok((string(k)?, string(v)?)))
            .collect(),
        other => Err(wrong("a map of strings", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(int(Value::from(-4)).unwrap(), -4);
        assert!(matches!(
            int(Value::from(u64::MAX)),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            int(Value::from("x")),
            Err(ClientError::Protocol(_))
        ));
        assert!(!truthy(&Value::Nil));
        assert!(truthy(&Value::Boolean(true)));
        assert!(!truthy(&Value::from(0)));
        assert!(truthy(&Value::from("a")));
        assert!(!truthy(&Value::Array(vec![])));
        assert_eq!(string(Value::from("s")).unwrap(), "s");
        assert!(string(Value::Nil).is_err());
        assert_eq!(list(Value::Nil).unwrap(), Vec::<Value>::new());
        let pair = Value::Array(vec![Value::Boolean(true), Value::from(3)]);
        assert_eq!(flag_and_int(pair).unwrap(), (true, 3));
        assert!(flag_and_int(Value::Array(vec![Value::Nil])).is_err());
        let state = Value::Array(vec![Value::Array(vec![Value::from("n1")]), Value::from(2)]);
        assert_eq!(list_and_int(state).unwrap(), (vec![Value::from("n1")], 2));
        assert!(list_and_int(Value::from(1)).is_err());
        assert_eq!(number(Value::from(2)).unwrap(), 2.0);
        assert_eq!(number(Value::F64(2.5)).unwrap(), 2.5);
        assert!(number(Value::Boolean(false)).is_err());
        let verdict = Value::Array(vec![
            Value::Map(vec![(Value::from("n2"), Value::from(0))]),
            Value::from(5),
        ]);
        assert_eq!(
            strikes_and_epoch(verdict).unwrap(),
            (vec![(Value::from("n2"), 0)], 5)
        );
        assert!(strikes_and_epoch(Value::Array(vec![Value::Nil, Value::from(1)])).is_err());
        let m = Value::Map(vec![(Value::from("c"), Value::from("Counter"))]);
        assert_eq!(string_map(m).unwrap()["c"], "Counter");
        assert!(string_map(Value::Map(vec![(Value::from(1), Value::from("x"))])).is_err());
    }
}
