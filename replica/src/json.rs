//! JSON <-> msgpack values, for the command line (arguments in, results out).
//!
//! The mapping:
//!
//! | msgpack                 | JSON                                                      |
//! |-------------------------|-----------------------------------------------------------|
//! | nil, bool, string       | null, bool, string                                        |
//! | integer                 | number (i64 or u64)                                       |
//! | f32 / f64               | number; NaN and infinities, which JSON lacks, become null |
//! | array                   | array                                                     |
//! | map                     | object; a non-string key is written as its JSON text (`1` -> `"1"`) |
//! | binary                  | array of byte values (0..=255)                            |
//! | ext(type, data)         | `{"ext": type, "data": [bytes]}`                          |
//! | string, invalid UTF-8   | string with U+FFFD replacements                           |
//!
//! JSON to msgpack is the inverse where one exists: integers that fit i64/u64 stay integers,
//! other numbers become f64, objects become maps with string keys. JSON has no binary type,
//! so an array of numbers stays an array.

use crate::command::Value;
use serde_json::{Map, Number, Value as Json};

/// Converts a msgpack value into JSON (see the module docs for the lossy cases).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => {
            if let Some(n) = i.as_i64() {
                Json::from(n)
            } else if let Some(n) = i.as_u64() {
                Json::from(n)
            } else {
                Json::Null
            }
        }
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => Json::String(match s.as_str() {
            Some(s) => s.to_string(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Value::Binary(bytes) => bytes_json(bytes),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => {
            let mut out = Map::new();
            for (k, v) in pairs {
                out.insert(key_text(k), to_json(v));
            }
            Json::Object(out)
        }
        Value::Ext(kind, data) => {
            let mut out = Map::new();
            out.insert("ext".into(), Json::from(*kind));
            out.insert("data".into(), bytes_json(data));
            Json::Object(out)
        }
    }
}

/// Converts JSON into a msgpack value.
pub fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // serde_json numbers are always one of i64, u64 or finite f64.
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// A command-line argument: JSON when it parses as JSON (`5`, `true`, `[1,2]`, `"5"`),
/// otherwise the text itself as a string (`alice`), so plain words need no quoting.
pub fn parse_cli_arg(s: &str) -> Value {
    match serde_json::from_str::<Json>(s) {
        Ok(j) => from_json(&j),
        Err(_) => Value::from(s),
    }
}

/// Renders a value as one line of JSON.
pub fn to_json_line(v: &Value) -> String {
    to_json(v).to_string()
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn bytes_json(bytes: &[u8]) -> Json {
    Json::Array(bytes.iter().map(|b| Json::from(*b)).collect())
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => match s.as_str() {
            Some(s) => s.to_string(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        },
        other => to_json(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_round_trip() {
        for j in [
            json!(null),
            json!(true),
            json!(-5),
            json!(u64::MAX),
            json!(1.5),
            json!("hé"),
        ] {
            assert_eq!(to_json(&from_json(&j)), j);
        }
        assert_eq!(from_json(&json!(7)), Value::from(7));
        assert_eq!(from_json(&json!(2.5)), Value::F64(2.5));
    }

    #[test]
    fn nested_round_trip() {
        let j = json!({"a": [1, "x", {"b": null}], "c": {"d": false}});
        let v = from_json(&j);
        assert!(matches!(v, Value::Map(_)));
        assert_eq!(to_json(&v), j);
    }

    #[test]
    fn msgpack_only_types() {
        assert_eq!(to_json(&Value::Binary(vec![0, 255])), json!([0, 255]));
        assert_eq!(to_json(&Value::F64(f64::NAN)), json!(null));
        assert_eq!(to_json(&Value::F32(0.5)), json!(0.5));
        assert_eq!(
            to_json(&Value::Ext(3, vec![1])),
            json!({"ext": 3, "data": [1]})
        );
        let m = Value::Map(vec![
            (Value::from(1), Value::from("one")),
            (Value::Boolean(true), Value::Nil),
        ]);
        assert_eq!(to_json(&m), json!({"1": "one", "true": null}));
        // A msgpack str whose bytes are not UTF-8.
        let bad = rmpv::decode::read_value(&mut &[0xa2, 0x61, 0xff][..]).unwrap();
        assert_eq!(to_json(&bad), json!("a\u{fffd}"));
    }

    #[test]
    fn cli_args() {
        assert_eq!(parse_cli_arg("5"), Value::from(5));
        assert_eq!(parse_cli_arg("-3"), Value::from(-3));
        assert_eq!(parse_cli_arg("\"5\""), Value::from("5"));
        assert_eq!(parse_cli_arg("alice"), Value::from("alice"));
        assert_eq!(parse_cli_arg("true"), Value::Boolean(true));
        assert_eq!(parse_cli_arg("null"), Value::Nil);
        assert_eq!(
            parse_cli_arg("[1, \"a\"]"),
            Value::Array(vec![Value::from(1), Value::from("a")])
        );
        assert_eq!(parse_cli_arg("{broken"), Value::from("{broken"));
        assert_eq!(parse_cli_arg(""), Value::from(""));
    }

    #[test]
    fn json_line() {
        assert_eq!(to_json_line(&Value::from(vec![Value::from(1)])), "[1]");
    }
}
