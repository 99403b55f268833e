//! User-defined object types: Python classes whose source entered the group through
//! consensus (`DefineType`), run by every replica in the sandboxed interpreter.
//!
//! A [`UserType`] is the replicated definition (module, class, source and its digest); a
//! [`UserObject`] is one live object of it, whose state is the instance's attributes as a
//! msgpack map. Both are plain data, so they snapshot like the built-ins.

use super::sandbox::{self, Code, Method};
use super::{CallId, Effects, ObjectError, Outcome, ReplicatedObject, decode_state, encode_state};
use crate::command::Value;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest source of one type: a type is kept in every snapshot and sent to every replica.
pub const SOURCE_LIMIT: usize = 256 << 10;

/// The one class `source` defines at its top level (for a definition that names none).
pub fn only_class(source: &str) -> Result<String, ObjectError> {
    if source.len() > SOURCE_LIMIT {
        return Err(ObjectError::value(format!(
            "the source is {} bytes; a type may have at most {SOURCE_LIMIT}",
            source.len()
        )));
    }
    let classes = sandbox::classes(source)?;
    match classes.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ObjectError::value("the source defines no class")),
        many => Err(ObjectError::value(format!(
            "the source defines several classes ({}); name the one to load",
            many.join(", ")
        ))),
    }
}

/// A user type as the group holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserType {
    /// The Python module the class came from, e.g. "tencounter".
    pub module: String,
    pub class: String,
    pub source: Arc<str>,
    pub sha256: String,
    pub methods: Vec<Method>,
}

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl UserType {
    /// Compiles `source` in the sandbox and checks that `class` is a class with methods.
    /// The same source gives the same answer on every replica.
    pub fn compile(module: &str, class: &str, source: &str) -> Result<UserType, ObjectError> {
        if !module.split('.').all(valid_identifier) {
            return Err(ObjectError::value(format!(
                "'{module}' is not a Python module name"
            )));
        }
        if !valid_identifier(class) {
            return Err(ObjectError::value(format!(
                "'{class}' is not a Python class name"
            )));
        }
        if source.len() > SOURCE_LIMIT {
            return Err(ObjectError::value(format!(
                "the source is {} bytes; a type may have at most {SOURCE_LIMIT}",
                source.len()
            )));
        }
        let code = Code::new(source, class);
        let info = sandbox::define(&code)?;
        Ok(UserType {
            module: module.to_string(),
            class: code.class,
            source: code.source,
            sha256: code.sha256,
            methods: info.methods,
        })
    }

    /// The code for the interpreter.
    pub fn code(&self) -> Code {
        Code {
            sha256: self.sha256.clone(),
            source: self.source.clone(),
            class: self.class.clone(),
        }
    }

    /// `module.Class`, e.g. "tencounter.TenCounter".
    pub fn dotted_name(&self) -> String {
        format!("{}.{}", self.module, self.class)
    }

    /// The object `-o module.Class` creates: the class name, lower-cased.
    pub fn default_name(&self) -> String {
        self.class.to_lowercase()
    }

    /// Whether `name` means this type: its dotted name, its class name, or (any case) the
    /// class or module name.
    pub fn answers_to(&self, name: &str) -> bool {
        let lower = name.to_lowercase();
        name == self.dotted_name()
            || name == self.class
            || lower == self.class.to_lowercase()
            || Some(lower.as_str())
                == self
                    .module
                    .rsplit('.')
                    .next()
                    .map(str::to_lowercase)
                    .as_deref()
    }

    /// A new object: runs the class's `__init__` with `args`.
    pub fn construct(self: &Arc<Self>, args: &[Value]) -> Result<UserObject, ObjectError> {
        let state = sandbox::construct(&self.code(), args)?;
        Ok(UserObject {
            ty: self.clone(),
            state,
        })
    }

    /// An object from the bytes [`UserObject::save`] produced.
    pub fn restore(self: &Arc<Self>, bytes: &[u8]) -> Result<UserObject, ObjectError> {
        Ok(UserObject {
            ty: self.clone(),
            state: decode_state(bytes)?,
        })
    }
}

/// One object of a user type.
#[derive(Debug)]
pub struct UserObject {
    ty: Arc<UserType>,
    state: Value,
}

impl UserObject {
    /// What Python's default `__str__`/`__repr__` would show, without the address (which
    /// differs between replicas).
    fn default_show(&self) -> String {
        format!("<{} object>", self.ty.dotted_name())
    }

    fn show(&self, repr: bool) -> Result<String, ObjectError> {
        Ok(sandbox::show(&self.ty.code(), &self.state, repr)?
            .unwrap_or_else(|| self.default_show()))
    }

    /// The type this object runs.
    pub fn user_type(&self) -> &Arc<UserType> {
        &self.ty
    }

    /// The instance's attributes.
    pub fn state(&self) -> &Value {
        &self.state
    }

    /// Sets the attributes a batched call left (see `sandbox::call_many`).
    pub fn set_state(&mut self, state: Value) {
        self.state = state;
    }
}

impl ReplicatedObject for UserObject {
    fn type_name(&self) -> &str {
        &self.ty.class
    }

    fn invoke(
        &mut self,
        _call: CallId,
        method: &str,
        args: &[Value],
        _fx: &mut Effects,
    ) -> Outcome {
        if method.starts_with('_') {
            // Private and special methods stay inside the object (`__str__` and
            // `__repr__` are answered by the registry).
            return Outcome::Done(Err(ObjectError::no_method(&self.ty.class, method)));
        }
        Outcome::Done(sandbox::call(
            &self.ty.code(),
            &mut self.state,
            method,
            args,
        ))
    }

    fn describe(&self) -> String {
        self.show(false)
            .unwrap_or_else(|e| format!("<{} object ({e})>", self.ty.dotted_name()))
    }

    fn repr(&self) -> String {
        self.show(true)
            .unwrap_or_else(|e| format!("<{} object ({e})>", self.ty.dotted_name()))
    }

    fn show_call(&self, repr: bool) -> super::CallResult {
        self.show(repr).map(Value::from)
    }

    fn as_user_mut(&mut self) -> Option<&mut UserObject> {
        Some(self)
    }

    fn save(&self) -> Result<Vec<u8>, ObjectError> {
        encode_state(&self.state)
    }
}
