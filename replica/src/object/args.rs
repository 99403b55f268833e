//! Reading positional arguments from the network the way Python would: a wrong count or a
//! wrong type is a `TypeError` whose message names the method or the parameter, and values
//! print like Python's `repr`/`str` so error lines read like ConCoord's.

use super::ObjectError;
use crate::command::Value;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Checks the number of positional arguments of `method(params...)`, of which the first
/// `required` are mandatory, with Python's wording.
pub fn arity(
    method: &str,
    args: &[Value],
    params: &[&str],
    required: usize,
) -> Result<(), ObjectError> {
    let given = args.len();
    if given < required {
        let missing = params.get(given..required).unwrap_or_default();
        return Err(ObjectError::type_error(format!(
            "{method}() missing {} required positional argument{}: {}",
            missing.len(),
            plural(missing.len()),
            join_names(missing)
        )));
    }
    let max = params.len();
    if given > max {
        let takes = if required == max {
            format!("{max} positional argument{}", plural(max))
        } else {
            format!("from {required} to {max} positional arguments")
        };
        let was = if given == 1 { "was" } else { "were" };
        return Err(ObjectError::type_error(format!(
            "{method}() takes {takes} but {given} {was} given"
        )));
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`, as Python lists missing arguments.
fn join_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

fn missing(name: &str) -> ObjectError {
    ObjectError::type_error(format!("missing required argument '{name}'"))
}

fn wrong_type(expected: &str, name: &str, got: &Value) -> ObjectError {
    ObjectError::type_error(format!(
        "expected {expected} for '{name}', got {}",
        py_type_name(got)
    ))
}

/// The argument at `i`, if given.
pub fn value_at(args: &[Value], i: usize, name: &str) -> Result<Value, ObjectError> {
    args.get(i).cloned().ok_or_else(|| missing(name))
}

/// The argument at `i`, or `default` when it was not given.
pub fn opt_value(args: &[Value], i: usize, default: Value) -> Value {
    args.get(i).cloned().unwrap_or(default)
}

/// An `int` argument. Python ints are unbounded; ours are 64-bit, and larger ones are
/// refused with Python's own overflow message.
pub fn int_at(args: &[Value], i: usize, name: &str) -> Result<i64, ObjectError> {
    let value = args.get(i).ok_or_else(|| missing(name))?;
    to_int(value).ok_or_else(|| match value {
        Value::Integer(_) => overflow(),
        other => wrong_type("int", name, other),
    })
}

/// An optional `int` argument with its default.
pub fn opt_int(args: &[Value], i: usize, name: &str, default: i64) -> Result<i64, ObjectError> {
    if args.len() > i {
        int_at(args, i, name)
    } else {
        Ok(default)
    }
}

fn to_int(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(n) => n.as_i64(),
        _ => None,
    }
}

/// A Python number as ConCoord's objects keep it: an int stays an int until a float
/// meets it (`Counter(2.5)`, `Bank` balances after `float(amount)`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// `self + other` with Python's int/float promotion; an int that leaves 64 bits is an
    /// OverflowError rather than a wrap.
    pub fn plus(self, other: Number) -> Result<Number, ObjectError> {
        Ok(match (self, other) {
            (Number::Int(a), Number::Int(b)) => Number::Int(
                a.checked_add(b)
                    .ok_or_else(|| ObjectError::new("OverflowError", "value out of range"))?,
            ),
            (a, b) => Number::Float(a.as_f64() + b.as_f64()),
        })
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            Number::Int(n) => Value::from(n),
            Number::Float(f) => Value::F64(f),
        }
    }

    /// Python's `"%d" % value`: a float is truncated toward zero.
    pub fn percent_d(self) -> String {
        match self {
            Number::Int(n) => n.to_string(),
            Number::Float(f) if f.is_finite() => format!("{:.0}", f.trunc()),
            Number::Float(f) => py_repr(&Value::F64(f)),
        }
    }
}

impl Default for Number {
    fn default() -> Number {
        Number::Int(0)
    }
}

/// An int or float argument.
pub fn number_at(args: &[Value], i: usize, name: &str) -> Result<Number, ObjectError> {
    let value = args.get(i).ok_or_else(|| missing(name))?;
    match value {
        Value::Integer(n) => n.as_i64().map(Number::Int).ok_or_else(overflow),
        Value::F32(f) => Ok(Number::Float(f64::from(*f))),
        Value::F64(f) => Ok(Number::Float(*f)),
        other => Err(wrong_type("int or float", name, other)),
    }
}

/// Python's `float(value)` of an argument: ints, floats and numeric strings.
pub fn float_at(args: &[Value], i: usize, name: &str) -> Result<f64, ObjectError> {
    let value = args.get(i).ok_or_else(|| missing(name))?;
    match value {
        Value::Integer(n) => n.as_f64().ok_or_else(overflow),
        Value::F32(f) => Ok(f64::from(*f)),
        Value::F64(f) => Ok(*f),
        Value::String(s) => {
            let text = s.as_str().unwrap_or_default();
            text.trim().parse::<f64>().map_err(|_| {
                ObjectError::value(format!(
                    "could not convert string to float: {}",
                    py_repr(value)
                ))
            })
        }
        other => Err(wrong_type("float", name, other)),
    }
}

/// Python's error for an int that does not fit in 64 bits.
pub fn overflow() -> ObjectError {
    ObjectError::new("OverflowError", "Python int too large to convert to C long")
}

/// An optional flag, read with Python truthiness (`acquire(0)` and `put(x, None)` do not
/// block), so it never fails.
pub fn opt_bool(args: &[Value], i: usize, default: bool) -> bool {
    args.get(i).map_or(default, truthy)
}

/// Python's `bool(value)`.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Nil => false,
        Value::Boolean(b) => *b,
        Value::Integer(n) => n.as_i64() != Some(0) && n.as_u64() != Some(0),
        Value::F32(f) => *f != 0.0,
        Value::F64(f) => *f != 0.0,
        Value::String(s) => !s.as_bytes().is_empty(),
        Value::Binary(b) => !b.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Map(m) => !m.is_empty(),
        Value::Ext(_, _) => true,
    }
}

/// A `str` argument (valid UTF-8).
pub fn str_at<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a str, ObjectError> {
    let value = args.get(i).ok_or_else(|| missing(name))?;
    match value {
        Value::String(s) => s
            .as_str()
            .ok_or_else(|| ObjectError::value(format!("'{name}' is not valid UTF-8"))),
        other => Err(wrong_type("str", name, other)),
    }
}

/// A key of a Python dict or set, restricted to the scalars a msgpack client can send that
/// Python can hash (a list arrives where Python had a tuple, and lists are unhashable).
/// Ordered, so sets and maps of keys iterate deterministically.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
}

impl Key {
    pub fn to_value(&self) -> Value {
        match self {
            Key::Int(n) => Value::from(*n),
            Key::Str(s) => Value::from(s.as_str()),
            Key::Bytes(b) => Value::Binary(b.clone()),
        }
    }

    /// The message of a Python `KeyError` for this key (its repr).
    pub fn key_error(&self) -> ObjectError {
        ObjectError::key(py_repr(&self.to_value()))
    }
}

/// Python's `str(key)`: strings without quotes.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&py_str(&self.to_value()))
    }
}

/// A hashable-scalar argument (see [`Key`]).
pub fn key_at(args: &[Value], i: usize, name: &str) -> Result<Key, ObjectError> {
    let value = args.get(i).ok_or_else(|| missing(name))?;
    match value {
        Value::Integer(n) => n.as_i64().map(Key::Int).ok_or_else(overflow),
        Value::String(s) => s
            .as_str()
            .map(|s| Key::Str(s.to_string()))
            .ok_or_else(|| ObjectError::value(format!("'{name}' is not valid UTF-8"))),
        Value::Binary(b) => Ok(Key::Bytes(b.clone())),
        other => Err(wrong_type("str or int", name, other)),
    }
}

/// Python's name for the type a msgpack value arrives as.
pub fn py_type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "NoneType",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bytes",
        Value::Array(_) => "list",
        Value::Map(_) => "dict",
        Value::Ext(_, _) => "ExtType",
    }
}

/// Python's `str(value)`: like `repr`, except that a string prints bare.
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => py_repr(other),
    }
}

/// Python's `repr(value)`.
pub fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, value);
    out
}

fn write_repr(out: &mut String, value: &Value) {
    match value {
        Value::Nil => out.push_str("None"),
        Value::Boolean(true) => out.push_str("True"),
        Value::Boolean(false) => out.push_str("False"),
        Value::Integer(n) => out.push_str(&n.to_string()),
        Value::F32(f) => out.push_str(&py_float(f64::from(*f))),
        Value::F64(f) => out.push_str(&py_float(*f)),
        Value::String(s) => out.push_str(&repr_str(&String::from_utf8_lossy(s.as_bytes()))),
        Value::Binary(b) => out.push_str(&repr_bytes(b)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, k);
                out.push_str(": ");
                write_repr(out, v);
            }
            out.push('}');
        }
        Value::Ext(tag, data) => {
            out.push_str(&format!("ExtType(code={tag}, data={})", repr_bytes(data)))
        }
    }
}

fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python quotes with `'` unless the text holds a `'` and no `"`.
fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn repr_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("b'");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

/// `True`/`False`, for describe() strings.
pub fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    #[test]
    fn arity_messages_read_like_python() {
        let e = arity("increment", &[Value::from(1)], &[], 0).unwrap_err();
        assert_eq!(e.kind, "TypeError");
        assert_eq!(
            e.message,
            "increment() takes 0 positional arguments but 1 was given"
        );
        let e = arity("open", &[s("a"), s("b")], &["accntno"], 1).unwrap_err();
        assert_eq!(
            e.message,
            "open() takes 1 positional argument but 2 were given"
        );
        let three = [Value::Nil, Value::Nil, Value::Nil];
        let e = arity("put", &three, &["item", "block"], 1).unwrap_err();
        assert_eq!(
            e.message,
            "put() takes from 1 to 2 positional arguments but 3 were given"
        );
        let e = arity("debit", &[s("a")], &["accntno", "amount"], 2).unwrap_err();
        assert_eq!(
            e.message,
            "debit() missing 1 required positional argument: 'amount'"
        );
        let e = arity("debit", &[], &["accntno", "amount"], 2).unwrap_err();
        assert_eq!(
            e.message,
            "debit() missing 2 required positional arguments: 'accntno' and 'amount'"
        );
        let e = arity("f", &[], &["a", "b", "c"], 3).unwrap_err();
        assert_eq!(
            e.message,
            "f() missing 3 required positional arguments: 'a', 'b', and 'c'"
        );
        assert!(arity("put", &[s("x")], &["item", "block"], 1).is_ok());
        // A table that claims more required than params does not panic.
        assert!(arity("f", &[], &["a"], 3).is_err());
    }

    #[test]
    fn typed_accessors() {
        let args = [Value::from(5), s("x"), Value::Nil, Value::from(u64::MAX)];
        assert_eq!(int_at(&args, 0, "amount"), Ok(5));
        let e = int_at(&args, 1, "amount").unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("TypeError", "expected int for 'amount', got str")
        );
        assert_eq!(int_at(&args, 3, "n").unwrap_err().kind, "OverflowError");
        assert_eq!(
            int_at(&args, 9, "n").unwrap_err().message,
            "missing required argument 'n'"
        );
        assert_eq!(opt_int(&args, 9, "n", 7), Ok(7));
        assert_eq!(
            opt_int(&args, 2, "n", 7).unwrap_err().message,
            "expected int for 'n', got NoneType"
        );
        assert_eq!(str_at(&args, 1, "key"), Ok("x"));
        assert_eq!(
            str_at(&args, 0, "key").unwrap_err().message,
            "expected str for 'key', got int"
        );
        assert_eq!(value_at(&args, 2, "v"), Ok(Value::Nil));
        assert!(value_at(&args, 4, "v").is_err());
        assert_eq!(opt_value(&args, 4, Value::from(1)), Value::from(1));
        assert_eq!(key_at(&args, 0, "k"), Ok(Key::Int(5)));
        assert_eq!(key_at(&args, 1, "k"), Ok(Key::Str("x".into())));
        assert_eq!(
            key_at(&args, 2, "k").unwrap_err().message,
            "expected str or int for 'k', got NoneType"
        );
        assert_eq!(key_at(&args, 3, "k").unwrap_err().kind, "OverflowError");
        let bad_utf8 = [rmpv::decode::read_value(&mut &[0xa1_u8, 0xff][..]).unwrap()];
        assert_eq!(str_at(&bad_utf8, 0, "k").unwrap_err().kind, "ValueError");
        assert_eq!(key_at(&bad_utf8, 0, "k").unwrap_err().kind, "ValueError");
    }

    #[test]
    fn truthiness_follows_python() {
        assert!(opt_bool(&[], 0, true));
        assert!(!opt_bool(&[Value::Boolean(false)], 0, true));
        for falsy in [
            Value::Nil,
            Value::from(0),
            Value::F64(0.0),
            s(""),
            Value::Array(vec![]),
        ] {
            assert!(!truthy(&falsy), "{falsy:?}");
        }
        for true_ in [
            Value::from(2),
            Value::from(u64::MAX),
            Value::F32(0.5),
            s("no"),
            Value::Array(vec![Value::Nil]),
        ] {
            assert!(truthy(&true_), "{true_:?}");
        }
    }

    #[test]
    fn repr_and_str_follow_python() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Boolean(true),
            Value::from(-3),
            Value::F64(2.0),
            Value::F64(0.25),
            s("it's"),
            s("a'b\"c\n"),
            Value::Binary(vec![b'a', 0, b'\'']),
            Value::Map(vec![(s("k"), Value::from(1))]),
        ]);
        assert_eq!(
            py_repr(&v),
            r#"[None, True, -3, 2.0, 0.25, "it's", 'a\'b"c\n', b'a\x00\'', {'k': 1}]"#
        );
        assert_eq!(py_str(&s("bare")), "bare");
        assert_eq!(py_repr(&Value::F64(f64::NAN)), "nan");
        assert_eq!(py_repr(&Value::F64(f64::NEG_INFINITY)), "-inf");
        assert_eq!(
            py_repr(&Value::Ext(1, vec![2])),
            "ExtType(code=1, data=b'\\x02')"
        );
        assert_eq!(Key::Str("a".into()).key_error().message, "'a'");
        assert_eq!(Key::Int(4).key_error().message, "4");
        assert_eq!(Key::Str("a".into()).to_string(), "a");
        assert_eq!(Key::Bytes(vec![1]).to_value(), Value::Binary(vec![1]));
        assert_eq!(py_type_name(&Value::Map(vec![])), "dict");
        assert_eq!(py_bool(false), "False");
    }
}
