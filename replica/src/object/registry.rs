//! The table of object types ([`ObjectTypes`]) and the named objects of a replica
//! ([`Registry`]).
//!
//! A type is named three ways, all accepted wherever a type name is given: the dotted
//! ConCoord name (`concoord.object.counter.Counter`), the class name (`Counter`) and the
//! short name (`counter`, any case). An object created from `-o` without a name is called
//! after its class, lower-cased.
//!
//! The registry applies calls in log order and holds nothing but deterministic state: objects
//! live in a BTreeMap, and a snapshot (`save`) lists them by name with their type and state.

use super::args::arity;
use super::user::UserType;
use super::{
    CallId, CallResult, Effects, ObjectError, Outcome, ReplicatedObject, SimpleObject,
    decode_state, encode_state,
};
use super::{
    bank::Bank, barrier::Barrier, boundedsemaphore::BoundedSemaphore, condition::Condition,
    counter::Counter, dict::Dict, jobmanager::JobManager, lock::Lock, log::Log,
    membership::Membership, meshmembership::MeshMembership, queue::Queue, rlock::RLock,
    semaphore::Semaphore, stack::Stack,
};
use crate::command::{SessionId, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds an object from constructor arguments.
pub type Constructor = fn(&[Value]) -> Result<Box<dyn ReplicatedObject>, ObjectError>;
/// Rebuilds an object from the bytes its `save()` produced.
pub type Restorer = fn(&[u8]) -> Result<Box<dyn ReplicatedObject>, ObjectError>;

/// One object type.
#[derive(Clone, Copy, Debug)]
pub struct TypeInfo {
    class_name: &'static str,
    module: &'static str,
    construct: Constructor,
    restore: Restorer,
}

impl TypeInfo {
    /// A type `module.class_name`; `class_name` must be what the objects' `type_name()`
    /// returns.
    pub fn new(
        module: &'static str,
        class_name: &'static str,
        construct: Constructor,
        restore: Restorer,
    ) -> TypeInfo {
        TypeInfo {
            class_name,
            module,
            construct,
            restore,
        }
    }

    /// The class name, e.g. "Counter".
    pub fn class_name(&self) -> &'static str {
        self.class_name
    }

    /// The Python module of the dotted name, e.g. "concoord.object.counter".
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// A new object from constructor arguments.
    pub fn construct(&self, args: &[Value]) -> Result<Box<dyn ReplicatedObject>, ObjectError> {
        (self.construct)(args)
    }

    /// An object from the bytes its `save()` produced.
    pub fn restore(&self, bytes: &[u8]) -> Result<Box<dyn ReplicatedObject>, ObjectError> {
        (self.restore)(bytes)
    }

    /// `module.Class`, e.g. "concoord.object.counter.Counter".
    pub fn dotted_name(&self) -> String {
        format!("{}.{}", self.module, self.class_name)
    }

    /// The name of the object `-o` creates: the class name, lower-cased.
    pub fn default_name(&self) -> String {
        self.class_name.to_lowercase()
    }

    /// The short names, compared case-insensitively: the class name and the module's last
    /// component.
    fn short_names(&self) -> [String; 2] {
        let module_tail = self.module.rsplit('.').next().unwrap_or(self.module);
        [self.class_name.to_lowercase(), module_tail.to_lowercase()]
    }

    fn answers_to(&self, name: &str) -> bool {
        name == self.dotted_name()
            || name == self.class_name
            || self.short_names().contains(&name.to_lowercase())
    }
}

fn boxed<T: ReplicatedObject + 'static>(
    object: Result<T, ObjectError>,
) -> Result<Box<dyn ReplicatedObject>, ObjectError> {
    object.map(|o| Box::new(o) as Box<dyn ReplicatedObject>)
}

macro_rules! builtin {
    ($class:literal, $file:literal, $ty:ty) => {
        TypeInfo {
            class_name: $class,
            module: concat!("concoord.object.", $file),
            construct: |args| boxed(<$ty>::from_args(args)),
            restore: |bytes| boxed(<$ty>::restore(bytes)),
        }
    };
}

/// A type an object can have: compiled in (built-in or registered at start-up) or defined
/// by users through the group.
#[derive(Clone, Debug)]
pub enum ObjectType {
    Builtin(TypeInfo),
    User(Arc<UserType>),
}

impl ObjectType {
    /// The class name, e.g. "Counter" or "TenCounter".
    pub fn class_name(&self) -> &str {
        match self {
            ObjectType::Builtin(t) => t.class_name(),
            ObjectType::User(t) => &t.class,
        }
    }

    /// `module.Class`.
    pub fn dotted_name(&self) -> String {
        match self {
            ObjectType::Builtin(t) => t.dotted_name(),
            ObjectType::User(t) => t.dotted_name(),
        }
    }

    /// The name of the object `-o` creates: the class name, lower-cased.
    pub fn default_name(&self) -> String {
        self.class_name().to_lowercase()
    }

    pub fn construct(&self, args: &[Value]) -> Result<Box<dyn ReplicatedObject>, ObjectError> {
        match self {
            ObjectType::Builtin(t) => t.construct(args),
            ObjectType::User(t) => boxed(t.construct(args)),
        }
    }

    pub fn restore(&self, bytes: &[u8]) -> Result<Box<dyn ReplicatedObject>, ObjectError> {
        match self {
            ObjectType::Builtin(t) => t.restore(bytes),
            ObjectType::User(t) => boxed(t.restore(bytes)),
        }
    }
}

/// The types objects can be created from: the built-ins plus any registered at start-up
/// (every replica must register the same), and the user types the group defined
/// (replicated: they are part of the state and its snapshots).
#[derive(Clone, Debug)]
pub struct ObjectTypes {
    types: Vec<TypeInfo>,
    /// User types by dotted name.
    user: BTreeMap<String, Arc<UserType>>,
}

impl Default for ObjectTypes {
    fn default() -> ObjectTypes {
        ObjectTypes::builtin()
    }
}

impl ObjectTypes {
    /// The types ConCoord shipped, plus Dict.
    pub fn builtin() -> ObjectTypes {
        ObjectTypes {
            user: BTreeMap::new(),
            types: vec![
                builtin!("Bank", "bank", Bank),
                builtin!("Barrier", "barrier", Barrier),
                builtin!("BoundedSemaphore", "boundedsemaphore", BoundedSemaphore),
                builtin!("Condition", "condition", Condition),
                builtin!("Counter", "counter", Counter),
                builtin!("Dict", "dict", Dict),
                builtin!("JobManager", "jobmanager", JobManager),
                builtin!("Lock", "lock", Lock),
                builtin!("Log", "log", Log),
                builtin!("Membership", "membership", Membership),
                builtin!("MeshMembership", "meshmembership", MeshMembership),
                builtin!("Queue", "queue", Queue),
                builtin!("RLock", "rlock", RLock),
                builtin!("Semaphore", "semaphore", Semaphore),
                builtin!("Stack", "stack", Stack),
            ],
        }
    }

    /// Adds a user type. Refused when one of its names is already taken, so a name never
    /// means two types.
    pub fn register(&mut self, info: TypeInfo) -> Result<(), ObjectError> {
        let mut names = info.short_names().to_vec();
        names.push(info.dotted_name());
        names.push(info.class_name.to_string());
        if let Some(taken) = self
            .types
            .iter()
            .find(|t| names.iter().any(|n| t.answers_to(n)))
        {
            return Err(ObjectError::value(format!(
                "object type '{}' conflicts with the registered type '{}'",
                info.dotted_name(),
                taken.dotted_name()
            )));
        }
        self.types.push(info);
        Ok(())
    }

    /// The type a dotted, class or short name refers to: a compiled-in type first, then a
    /// user type by its exact dotted name, then by its other names.
    pub fn resolve(&self, name: &str) -> Option<ObjectType> {
        if let Some(t) = self.types.iter().find(|t| t.answers_to(name)) {
            return Some(ObjectType::Builtin(*t));
        }
        if let Some(t) = self.user.get(name) {
            return Some(ObjectType::User(t.clone()));
        }
        self.user
            .values()
            .find(|t| t.answers_to(name))
            .map(|t| ObjectType::User(t.clone()))
    }

    /// Like [`ObjectTypes::resolve`], with an error that lists the known types.
    pub fn lookup(&self, name: &str) -> Result<ObjectType, ObjectError> {
        self.resolve(name).ok_or_else(|| {
            let known: Vec<String> = self
                .types
                .iter()
                .map(TypeInfo::default_name)
                .chain(self.user.values().map(|t| t.dotted_name()))
                .collect();
            ObjectError::value(format!(
                "unknown object type '{name}' (known: {})",
                known.join(", ")
            ))
        })
    }

    /// The name of the object `-o TYPE` creates, e.g. "counter".
    pub fn default_name(&self, type_name: &str) -> Result<String, ObjectError> {
        self.lookup(type_name).map(|t| t.default_name())
    }

    /// The compiled-in types.
    pub fn iter(&self) -> impl Iterator<Item = &TypeInfo> {
        self.types.iter()
    }

    /// The user types, by dotted name.
    pub fn user_types(&self) -> impl Iterator<Item = &Arc<UserType>> {
        self.user.values()
    }

    /// The compiled-in types only (what a snapshot's user types are restored onto).
    pub fn without_user_types(&self) -> ObjectTypes {
        ObjectTypes {
            types: self.types.clone(),
            user: BTreeMap::new(),
        }
    }

    /// Adds a user type, or with `replace` swaps the code of one already defined. Refused
    /// when one of its names means another type. Defining the same code again is a no-op.
    pub fn define(&mut self, ty: UserType, replace: bool) -> Result<Arc<UserType>, ObjectError> {
        let dotted = ty.dotted_name();
        let names = [dotted.clone(), ty.class.clone()];
        if let Some(builtin) = self
            .types
            .iter()
            .find(|t| names.iter().any(|n| t.answers_to(n)) || ty.answers_to(t.class_name()))
        {
            return Err(ObjectError::value(format!(
                "object type '{dotted}' conflicts with the built-in type '{}'",
                builtin.dotted_name()
            )));
        }
        if let Some(other) = self.user.values().find(|t| {
            t.dotted_name() != dotted && (t.answers_to(&ty.class) || ty.answers_to(&t.class))
        }) {
            return Err(ObjectError::value(format!(
                "object type '{dotted}' conflicts with the defined type '{}'",
                other.dotted_name()
            )));
        }
        if let Some(old) = self.user.get(&dotted) {
            if old.sha256 == ty.sha256 {
                return Ok(old.clone());
            }
            if !replace {
                return Err(ObjectError::value(format!(
                    "object type '{dotted}' is already defined with other code (sha256 {}); \
                     load it with replace to swap the code of its objects",
                    old.sha256
                )));
            }
        }
        let ty = Arc::new(ty);
        self.user.insert(dotted, ty.clone());
        Ok(ty)
    }
}

#[derive(Debug)]
struct Entry {
    info: ObjectType,
    object: Box<dyn ReplicatedObject>,
}

/// One object in a snapshot.
#[derive(Serialize, Deserialize)]
struct SavedObject {
    name: String,
    /// Dotted type name.
    type_name: String,
    /// The object's own `save()` bytes (msgpack bin).
    state: Value,
}

#[derive(Serialize, Deserialize)]
struct SavedRegistry {
    objects: Vec<SavedObject>,
}

/// The named objects of a replica. Each object remembers its type, so a reset or a
/// snapshot needs no type table; creating and restoring look types up in an [`ObjectTypes`].
#[derive(Debug, Default)]
pub struct Registry {
    objects: BTreeMap<String, Entry>,
}

fn not_defined(name: &str) -> ObjectError {
    ObjectError::new("NameError", format!("name '{name}' is not defined"))
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.objects.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Creates object `name` of `type_name` (any of its names) with constructor `args`.
    pub fn create(
        &mut self,
        types: &ObjectTypes,
        name: &str,
        type_name: &str,
        args: &[Value],
    ) -> CallResult {
        if name.is_empty() {
            return Err(ObjectError::value("object name must not be empty"));
        }
        if self.objects.contains_key(name) {
            return Err(ObjectError::value(format!(
                "object '{name}' already exists"
            )));
        }
        let info = types.lookup(type_name)?;
        let object = info.construct(args)?;
        self.objects
            .insert(name.to_string(), Entry { info, object });
        Ok(Value::Nil)
    }

    /// Deletes object `name`; its parked calls fail with RuntimeError.
    pub fn delete(&mut self, name: &str, fx: &mut Effects) -> CallResult {
        let mut entry = self.objects.remove(name).ok_or_else(|| not_defined(name))?;
        fail_parked(
            entry.object.as_mut(),
            &format!("object '{name}' was deleted"),
            fx,
        );
        Ok(Value::Nil)
    }

    /// The objects as a map from name to class name, in name order.
    pub fn list(&self) -> Value {
        Value::Map(
            self.objects
                .iter()
                .map(|(name, e)| (Value::from(name.as_str()), Value::from(e.info.class_name())))
                .collect(),
        )
    }

    /// Calls `method` on object `object`. Besides the type's own methods, every object
    /// answers `__str__` (its describe()), `__repr__` (its repr()) and
    /// `__concoordinit__(args...)`, which rebuilds it with those constructor arguments (its
    /// parked calls fail; when the constructor refuses the arguments, nothing changes).
    pub fn invoke(
        &mut self,
        call: CallId,
        object: &str,
        method: &str,
        args: &[Value],
        fx: &mut Effects,
    ) -> Outcome {
        let Some(entry) = self.objects.get_mut(object) else {
            return Outcome::Done(Err(not_defined(object)));
        };
        match method {
            "__str__" => Outcome::Done(
                arity(method, args, &[], 0).and_then(|()| entry.object.show_call(false)),
            ),
            "__repr__" => Outcome::Done(
                arity(method, args, &[], 0).and_then(|()| entry.object.show_call(true)),
            ),
            "__concoordinit__" => Outcome::Done(entry.info.construct(args).map(|fresh| {
                let mut old = std::mem::replace(&mut entry.object, fresh);
                fail_parked(old.as_mut(), &format!("object '{object}' was reset"), fx);
                Value::Nil
            })),
            _ => entry.object.invoke(call, method, args, fx),
        }
    }

    /// Whether calling `method` on `object` leaves every object as it was, so the `readonly`
    /// role may make the call. `__str__` and `__repr__` of the built-ins are reads; a user
    /// type's code may do anything, so none of its methods is.
    pub fn is_read_only(&self, object: &str, method: &str) -> bool {
        // A missing object is no read: it may exist by the time the call runs (a create
        // decided but not applied here yet).
        let Some(entry) = self.objects.get(object) else {
            return false;
        };
        if matches!(entry.info, ObjectType::User(_)) {
            return false;
        }
        matches!(method, "__str__" | "__repr__") || entry.object.is_read_only(method)
    }

    /// The session is gone: every object, in name order, releases what it held.
    pub fn session_expired(&mut self, session: SessionId, fx: &mut Effects) {
        for entry in self.objects.values_mut() {
            entry.object.session_expired(session, fx);
        }
    }

    /// A snapshot of every object.
    pub fn save(&self) -> Result<Vec<u8>, ObjectError> {
        let objects = self
            .objects
            .iter()
            .map(|(name, e)| {
                Ok(SavedObject {
                    name: name.clone(),
                    type_name: e.info.dotted_name(),
                    state: Value::Binary(e.object.save()?),
                })
            })
            .collect::<Result<Vec<_>, ObjectError>>()?;
        encode_state(&SavedRegistry { objects })
    }

    /// Rebuilds a registry from `save()` bytes; its types must be known to `types`.
    pub fn restore(bytes: &[u8], types: &ObjectTypes) -> Result<Registry, ObjectError> {
        let saved: SavedRegistry = decode_state(bytes)?;
        let mut registry = Registry::new();
        for object in saved.objects {
            let info = types.lookup(&object.type_name)?;
            let Value::Binary(state) = &object.state else {
                return Err(ObjectError::runtime(format!(
                    "cannot restore object '{}': its state is not binary",
                    object.name
                )));
            };
            let restored = info.restore(state)?;
            let entry = Entry {
                info,
                object: restored,
            };
            if registry
                .objects
                .insert(object.name.clone(), entry)
                .is_some()
            {
                return Err(ObjectError::runtime(format!(
                    "cannot restore: object '{}' appears twice",
                    object.name
                )));
            }
        }
        Ok(registry)
    }
}

impl Registry {
    /// The objects of user type `ty` (by dotted name) now run its new code, keeping their
    /// state. All or nothing: when one state does not restore under the new type, nothing
    /// changes.
    pub fn retype(&mut self, ty: &Arc<UserType>) -> Result<usize, ObjectError> {
        let dotted = ty.dotted_name();
        let mut swapped = Vec::new();
        for (name, entry) in &self.objects {
            if entry.info.dotted_name() == dotted {
                let object = ty.restore(&entry.object.save()?)?;
                swapped.push((name.clone(), object));
            }
        }
        let count = swapped.len();
        for (name, object) in swapped {
            if let Some(entry) = self.objects.get_mut(&name) {
                entry.info = ObjectType::User(ty.clone());
                entry.object = Box::new(object);
            }
        }
        Ok(count)
    }

    /// Whether `name` is an object of a user-defined type.
    pub fn is_user_object(&self, name: &str) -> bool {
        self.objects
            .get(name)
            .is_some_and(|e| matches!(e.info, ObjectType::User(_)))
    }

    /// The code and state of user object `name`, for a batch of calls.
    pub fn user_parts(&mut self, name: &str) -> Option<(super::sandbox::Code, Value)> {
        let user = self.objects.get_mut(name)?.object.as_user_mut()?;
        Some((user.user_type().code(), user.state().clone()))
    }

    /// Stores the state a batch of calls left in user object `name`.
    pub fn set_user_state(&mut self, name: &str, state: Value) {
        if let Some(user) = self
            .objects
            .get_mut(name)
            .and_then(|e| e.object.as_user_mut())
        {
            user.set_state(state);
        }
    }

    /// How many objects have the type of this dotted name.
    pub fn count_of(&self, dotted: &str) -> usize {
        self.objects
            .values()
            .filter(|e| e.info.dotted_name() == dotted)
            .count()
    }
}

fn fail_parked(object: &mut dyn ReplicatedObject, why: &str, fx: &mut Effects) {
    for call in object.drain_parked() {
        fx.complete(call, Err(ObjectError::runtime(why)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn builtin() -> ObjectTypes {
        ObjectTypes::builtin()
    }

    fn registry_with(name: &str, type_name: &str, args: &[Value]) -> Registry {
        let mut r = Registry::default();
        assert_eq!(r.create(&builtin(), name, type_name, args), Ok(Value::Nil));
        r
    }

    #[test]
    fn type_names_resolve_every_way() {
        let types = ObjectTypes::builtin();
        for name in [
            "concoord.object.counter.Counter",
            "Counter",
            "counter",
            "COUNTER",
        ] {
            assert_eq!(
                types.resolve(name).unwrap().class_name(),
                "Counter",
                "{name}"
            );
        }
        for name in [
            "concoord.object.boundedsemaphore.BoundedSemaphore",
            "BoundedSemaphore",
            "boundedsemaphore",
            "BoundedSEMAPHORE",
        ] {
            assert_eq!(
                types.resolve(name).unwrap().class_name(),
                "BoundedSemaphore"
            );
        }
        assert_eq!(types.resolve("rlock").unwrap().class_name(), "RLock");
        assert_eq!(types.resolve("lock").unwrap().class_name(), "Lock");
        assert_eq!(
            types.resolve("meshmembership").unwrap().class_name(),
            "MeshMembership"
        );
        assert_eq!(
            types.default_name("concoord.object.counter.Counter"),
            Ok("counter".into())
        );
        assert_eq!(
            types.default_name("BoundedSemaphore"),
            Ok("boundedsemaphore".into())
        );
        assert_eq!(
            types.resolve("Counter").unwrap().dotted_name(),
            "concoord.object.counter.Counter"
        );
        assert_eq!(types.iter().count(), 15);
        for info in types.iter() {
            let object = info.construct(&[]).unwrap();
            assert_eq!(object.type_name(), info.class_name());
            let back = info.restore(&object.save().unwrap()).unwrap();
            assert_eq!(back.describe(), object.describe());
            assert_eq!(back.repr(), object.repr());
        }
    }

    #[test]
    fn unknown_types_are_clear_errors() {
        let types = ObjectTypes::builtin();
        for name in [
            "foo",
            "concoord.object.foo.Counter",
            "",
            "concoord.object.counter.counter",
        ] {
            let e = types.lookup(name).unwrap_err();
            assert_eq!(e.kind, "ValueError");
            assert!(
                e.message.starts_with(&format!(
                    "unknown object type '{name}' (known: bank, barrier,"
                )),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn user_types_register_once() {
        let mut types = ObjectTypes::builtin();
        let ten = TypeInfo::new(
            "tencounter",
            "TenCounter",
            |args| boxed(Counter::from_args(args)),
            |bytes| boxed(Counter::restore(bytes)),
        );
        assert_eq!(types.register(ten), Ok(()));
        assert_eq!(
            types.resolve("tencounter.TenCounter").unwrap().class_name(),
            "TenCounter"
        );
        assert_eq!(
            types.resolve("tencounter").unwrap().class_name(),
            "TenCounter"
        );
        let e = types.register(ten).unwrap_err();
        assert_eq!(
            e.message,
            "object type 'tencounter.TenCounter' conflicts with the registered type 'tencounter.TenCounter'"
        );
        let clash = TypeInfo {
            module: "myapp.counter",
            class_name: "MyCounter",
            ..ten
        };
        assert!(
            types
                .register(clash)
                .unwrap_err()
                .message
                .contains("concoord.object.counter.Counter")
        );
        let mut r = Registry::new();
        assert_eq!(
            r.create(&types, "t", "TenCounter", &[v(10)]),
            Ok(Value::Nil)
        );
        let back = Registry::restore(&r.save().unwrap(), &types).unwrap();
        assert_eq!(back.list(), r.list());
        // A registry without the user type cannot restore it, and says so.
        let e = Registry::restore(&r.save().unwrap(), &ObjectTypes::builtin()).unwrap_err();
        assert!(
            e.message
                .starts_with("unknown object type 'tencounter.TenCounter'")
        );
    }

    #[test]
    fn create_delete_list() {
        let mut r = Registry::default();
        assert!(r.is_empty());
        assert_eq!(
            r.create(
                &builtin(),
                "counter",
                "concoord.object.counter.Counter",
                &[]
            ),
            Ok(Value::Nil)
        );
        assert_eq!(r.create(&builtin(), "q", "queue", &[v(3)]), Ok(Value::Nil));
        assert_eq!(
            r.create(&builtin(), "q", "stack", &[]),
            Err(ObjectError::value("object 'q' already exists"))
        );
        assert_eq!(
            r.create(&builtin(), "", "stack", &[]),
            Err(ObjectError::value("object name must not be empty"))
        );
        assert_eq!(
            r.create(&builtin(), "s", "nope", &[]).unwrap_err().kind,
            "ValueError"
        );
        assert_eq!(
            r.create(&builtin(), "s", "semaphore", &[v(-1)]),
            Err(ObjectError::value(""))
        );
        assert!(!r.contains("s"));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.list(),
            Value::Map(vec![(v("counter"), v("Counter")), (v("q"), v("Queue"))])
        );
        let mut fx = Effects::default();
        assert_eq!(r.delete("q", &mut fx), Ok(Value::Nil));
        assert_eq!(
            r.delete("q", &mut fx),
            Err(ObjectError::new("NameError", "name 'q' is not defined"))
        );
        assert_eq!(r.list(), Value::Map(vec![(v("counter"), v("Counter"))]));
    }

    #[test]
    fn invoke_and_special_methods() {
        let mut r = registry_with("counter", "Counter", &[v(5)]);
        let mut fx = Effects::default();
        assert_eq!(
            r.invoke(c(1, 1), "counter", "increment", &[], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            r.invoke(c(1, 2), "counter", "getvalue", &[], &mut fx),
            ok(6)
        );
        assert_eq!(
            r.invoke(c(1, 3), "counter", "__str__", &[], &mut fx),
            ok("The counter value is 6")
        );
        assert_eq!(
            r.invoke(c(1, 4), "counter", "__repr__", &[], &mut fx),
            ok("The counter value is 6")
        );
        assert_eq!(
            r.invoke(c(1, 5), "counter", "__str__", &[v(1)], &mut fx),
            err(
                "TypeError",
                "__str__() takes 0 positional arguments but 1 was given"
            )
        );
        assert_eq!(
            r.invoke(c(1, 6), "counter", "__concoordinit__", &[v(100)], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            r.invoke(c(1, 7), "counter", "getvalue", &[], &mut fx),
            ok(100)
        );
        assert_eq!(
            r.invoke(c(1, 8), "counter", "__concoordinit__", &[], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            r.invoke(c(1, 9), "counter", "getvalue", &[], &mut fx),
            ok(0)
        );
        // A failed reset keeps the old object.
        assert_eq!(
            r.invoke(c(1, 10), "counter", "__concoordinit__", &[v("x")], &mut fx),
            err("TypeError", "expected int or float for 'value', got str")
        );
        assert_eq!(
            r.invoke(c(1, 11), "counter", "getvalue", &[], &mut fx),
            ok(0)
        );
        assert_eq!(
            r.invoke(c(1, 12), "ghost", "getvalue", &[], &mut fx),
            err("NameError", "name 'ghost' is not defined")
        );
        assert_eq!(
            r.invoke(c(1, 13), "counter", "fly", &[], &mut fx),
            err("AttributeError", "'Counter' object has no attribute 'fly'")
        );
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn reset_and_delete_fail_parked_calls() {
        let mut r = registry_with("lock", "Lock", &[]);
        let mut fx = Effects::default();
        assert_eq!(
            r.invoke(c(1, 1), "lock", "acquire", &[], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            r.invoke(c(2, 1), "lock", "acquire", &[], &mut fx),
            Outcome::Parked
        );
        assert_eq!(
            r.invoke(c(3, 0), "lock", "__repr__", &[], &mut fx),
            ok("<DLock owner=1>")
        );
        assert_eq!(
            r.invoke(c(3, 1), "lock", "__concoordinit__", &[], &mut fx),
            ok(Value::Nil)
        );
        assert_eq!(
            fx.completed,
            vec![(
                c(2, 1),
                Err(ObjectError::runtime("object 'lock' was reset"))
            )]
        );
        assert_eq!(
            r.invoke(c(3, 2), "lock", "__str__", &[], &mut fx),
            ok("<DLock object>")
        );
        assert_eq!(
            r.invoke(c(3, 3), "lock", "__repr__", &[], &mut fx),
            ok("<DLock owner=None>")
        );
        let mut fx = Effects::default();
        r.invoke(c(1, 2), "lock", "acquire", &[], &mut fx);
        r.invoke(c(2, 2), "lock", "acquire", &[], &mut fx);
        assert_eq!(r.delete("lock", &mut fx), Ok(Value::Nil));
        assert_eq!(
            fx.completed,
            vec![(
                c(2, 2),
                Err(ObjectError::runtime("object 'lock' was deleted"))
            )]
        );
    }

    #[test]
    fn session_expiry_fans_out() {
        let mut r = registry_with("a", "lock", &[]);
        r.create(&builtin(), "b", "semaphore", &[v(1)]).unwrap();
        let mut fx = Effects::default();
        r.invoke(c(1, 1), "a", "acquire", &[], &mut fx);
        r.invoke(c(1, 2), "b", "acquire", &[], &mut fx);
        r.invoke(c(2, 1), "a", "acquire", &[], &mut fx);
        r.invoke(c(2, 2), "b", "acquire", &[], &mut fx);
        r.session_expired(1, &mut fx);
        // The lock's waiter gets None (ConCoord 1.1's Lock), the semaphore's True.
        assert_eq!(
            fx.completed,
            vec![(c(2, 1), Ok(Value::Nil)), (c(2, 2), Ok(v(true)))]
        );
    }

    #[test]
    fn str_and_repr_differ_for_threading_objects() {
        let mut r = Registry::default();
        let mut fx = Effects::default();
        for (name, type_name, args) in [
            ("l", "Lock", vec![]),
            ("rl", "RLock", vec![]),
            ("s", "Semaphore", vec![v(0)]),
            ("bs", "BoundedSemaphore", vec![v(2)]),
            ("cv", "Condition", vec![]),
            ("b", "Barrier", vec![v(2)]),
        ] {
            r.create(&builtin(), name, type_name, &args).unwrap();
        }
        r.invoke(c(1, 1), "l", "acquire", &[], &mut fx);
        r.invoke(c(1, 2), "rl", "acquire", &[], &mut fx);
        r.invoke(c(1, 3), "rl", "acquire", &[], &mut fx);
        assert_eq!(
            r.invoke(c(2, 1), "s", "acquire", &[], &mut fx),
            Outcome::Parked
        );
        r.invoke(c(1, 4), "bs", "acquire", &[], &mut fx);
        r.invoke(c(1, 5), "cv", "acquire", &[], &mut fx);
        assert_eq!(
            r.invoke(c(1, 6), "cv", "wait", &[], &mut fx),
            Outcome::Parked
        );
        assert_eq!(
            r.invoke(c(1, 7), "b", "wait", &[], &mut fx),
            Outcome::Parked
        );
        for (name, str_text, repr_text) in [
            ("l", "<DLock object>", "<DLock owner=1>"),
            ("rl", "<DRLock object>", "<DRLock owner=1 count=2>"),
            ("s", "<DSemaphore object>", "<DSemaphore count=-1>"),
            (
                "bs",
                "<DBoundedSemaphore object>",
                "<DBoundedSemaphore count=1 init=2>",
            ),
            (
                "cv",
                "<DCondition object>",
                "<Condition(<DRLock object>, 1)>",
            ),
            (
                "b",
                "<Barrier object>",
                "<DBarrier parties=2 n_waiting=1 broken=False>",
            ),
        ] {
            assert_eq!(
                r.invoke(c(3, 1), name, "__str__", &[], &mut fx),
                ok(str_text),
                "{name}"
            );
            assert_eq!(
                r.invoke(c(3, 2), name, "__repr__", &[], &mut fx),
                ok(repr_text),
                "{name}"
            );
        }
        assert_eq!(
            r.invoke(c(3, 3), "l", "__repr__", &[v(1)], &mut fx),
            err(
                "TypeError",
                "__repr__() takes 0 positional arguments but 1 was given"
            )
        );
        assert!(fx.completed.is_empty());
    }

    #[test]
    fn a_refused_semaphore_reset_keeps_the_old_state() {
        for type_name in ["Semaphore", "BoundedSemaphore"] {
            let mut r = registry_with("s", type_name, &[v(1)]);
            let mut fx = Effects::default();
            assert_eq!(r.invoke(c(1, 1), "s", "acquire", &[], &mut fx), ok(true));
            assert_eq!(
                r.invoke(c(2, 1), "s", "acquire", &[], &mut fx),
                Outcome::Parked
            );
            let before = r.invoke(c(3, 1), "s", "__repr__", &[], &mut fx);
            assert_eq!(
                r.invoke(c(3, 2), "s", "__concoordinit__", &[v(-1)], &mut fx),
                err("ValueError", "")
            );
            // Nothing changed: the same count, and the waiter still waits for a permit.
            assert!(fx.completed.is_empty(), "{type_name}");
            assert_eq!(r.invoke(c(3, 3), "s", "__repr__", &[], &mut fx), before);
            r.invoke(c(1, 2), "s", "release", &[], &mut fx);
            assert_eq!(fx.completed, vec![(c(2, 1), Ok(v(true)))], "{type_name}");
        }
    }

    #[test]
    fn save_restore_round_trip() {
        let mut r = registry_with("q", "Queue", &[v(1)]);
        r.create(&builtin(), "d", "dict", &[]).unwrap();
        let mut fx = Effects::default();
        r.invoke(c(1, 1), "q", "put", &[v("x")], &mut fx);
        r.invoke(c(1, 2), "q", "put", &[v("y"), v(true)], &mut fx);
        r.invoke(c(1, 3), "d", "set", &[v("k"), v(1)], &mut fx);
        let bytes = r.save().unwrap();
        let mut back = Registry::restore(&bytes, &ObjectTypes::builtin()).unwrap();
        assert_eq!(back.save().unwrap(), bytes);
        assert_eq!(back.list(), r.list());
        let mut fx = Effects::default();
        assert_eq!(back.invoke(c(2, 1), "q", "get", &[], &mut fx), ok("x"));
        assert_eq!(fx.completed, vec![(c(1, 2), Ok(Value::Nil))]);
        assert_eq!(back.invoke(c(2, 2), "d", "get", &[v("k")], &mut fx), ok(1));
    }

    #[test]
    fn restore_rejects_bad_bytes() {
        let types = ObjectTypes::builtin();
        assert!(Registry::restore(b"", &types).is_err());
        assert!(Registry::restore(&[0x93, 0x01], &types).is_err());
        let bad_state = encode_state(&SavedRegistry {
            objects: vec![SavedObject {
                name: "c".into(),
                type_name: "Counter".into(),
                state: v(1),
            }],
        })
        .unwrap();
        assert!(
            Registry::restore(&bad_state, &types)
                .unwrap_err()
                .message
                .contains("not binary")
        );
        let garbage = encode_state(&SavedRegistry {
            objects: vec![SavedObject {
                name: "c".into(),
                type_name: "Counter".into(),
                state: Value::Binary(vec![0xc1]),
            }],
        })
        .unwrap();
        assert!(Registry::restore(&garbage, &types).is_err());
        let counter = Counter::from_args(&[]).unwrap().save().unwrap();
        let twice = encode_state(&SavedRegistry {
            objects: (0..2)
                .map(|_| SavedObject {
                    name: "c".into(),
                    type_name: "Counter".into(),
                    state: Value::Binary(counter.clone()),
                })
                .collect(),
        })
        .unwrap();
        assert_eq!(
            Registry::restore(&twice, &types).unwrap_err().message,
            "cannot restore: object 'c' appears twice"
        );
    }

    mod determinism {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &["a", "b", "c"];
        const TYPES: &[&str] = &[
            "bank",
            "barrier",
            "boundedsemaphore",
            "condition",
            "counter",
            "dict",
            "jobmanager",
            "lock",
            "log",
            "membership",
            "meshmembership",
            "queue",
            "rlock",
            "semaphore",
            "stack",
            "nope",
        ];
        /// Methods per class, so most calls reach a real method (blocking ones twice, to
        /// park often), then the registry's special methods and a bad name.
        fn methods_of(class: &str) -> Vec<&'static str> {
            let own = match class {
                "Bank" => "open close debit deposit balance",
                "Barrier" => "wait wait parties n_waiting broken reset abort",
                "Counter" => "increment decrement getvalue",
                "Dict" => "get set delete keys items len contains cas",
                "JobManager" => "schedule deschedule list_jobs",
                "Lock" => "acquire acquire release release locked",
                "Log" => "write append read",
                "Membership" => "add remove members",
                "MeshMembership" => {
                    "add_group remove_group approve_join check_member get_group_members \
                     get_group_epoch get_group_state notify_failure wait wait"
                }
                "Queue" => "put put get get qsize empty full",
                "Stack" => "append pop get_size get_stack",
                "Condition" => "acquire acquire release release wait wait notify notify_all",
                _ => "acquire acquire release release",
            };
            own.split_whitespace()
                .chain(["__str__", "__repr__", "__concoordinit__", "bogus"])
                .collect()
        }

        fn class_of(r: &Registry, name: &str) -> String {
            r.objects
                .get(name)
                .map_or(String::new(), |e| e.info.class_name().to_string())
        }

        #[derive(Clone, Debug)]
        enum Op {
            Create(usize, usize, Vec<Value>),
            Delete(usize),
            /// Deletes and creates again at once, so names are seldom missing.
            Recreate(usize, usize),
            Call(u64, usize, usize, Vec<Value>),
            Expire(u64),
            Snapshot,
        }

        fn arg() -> impl Strategy<Value = Value> {
            prop_oneof![
                (-1i64..4).prop_map(Value::from),
                prop::sample::select(vec!["x", "y", "g"]).prop_map(Value::from),
                any::<bool>().prop_map(Value::Boolean),
                Just(Value::Nil),
            ]
        }

        /// Short argument lists are the common case of real calls.
        fn args() -> impl Strategy<Value = Vec<Value>> {
            prop_oneof![
                2 => Just(vec![]),
                2 => prop::collection::vec(arg(), 1),
                1 => prop::collection::vec(arg(), 2..4),
            ]
        }

        /// Mostly valid constructor arguments: none, or a small count.
        fn ctor_args() -> impl Strategy<Value = Vec<Value>> {
            prop_oneof![
                3 => Just(vec![]),
                2 => (0i64..4).prop_map(|n| vec![Value::from(n)]),
                1 => args(),
            ]
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                2 => (0..NAMES.len(), 0..TYPES.len(), ctor_args())
                    .prop_map(|(n, t, a)| Op::Create(n, t, a)),
                1 => (0..NAMES.len()).prop_map(Op::Delete),
                2 => (0..NAMES.len(), 0..TYPES.len() - 1)
                    .prop_map(|(n, t)| Op::Recreate(n, t)),
                24 => (1u64..4, 0..NAMES.len(), any::<usize>(), args())
                    .prop_map(|(s, n, m, a)| Op::Call(s, n, m, a)),
                2 => (1u64..4).prop_map(Op::Expire),
                1 => Just(Op::Snapshot),
            ]
        }

        fn apply(r: &mut Registry, op: &Op, seq: u64) -> (Option<Outcome>, Effects) {
            let types = ObjectTypes::builtin();
            let mut fx = Effects::default();
            let out = match op {
                Op::Create(n, t, a) => {
                    Some(Outcome::Done(r.create(&types, NAMES[*n], TYPES[*t], a)))
                }
                Op::Delete(n) => Some(Outcome::Done(r.delete(NAMES[*n], &mut fx))),
                Op::Recreate(n, t) => {
                    let _ = r.delete(NAMES[*n], &mut fx);
                    Some(Outcome::Done(r.create(&types, NAMES[*n], TYPES[*t], &[])))
                }
                Op::Call(s, n, m, a) => {
                    let methods = methods_of(&class_of(r, NAMES[*n]));
                    let method = methods[*m % methods.len()];
                    Some(r.invoke(c(*s, seq), NAMES[*n], method, a, &mut fx))
                }
                Op::Expire(s) => {
                    r.session_expired(*s, &mut fx);
                    None
                }
                Op::Snapshot => None,
            };
            (out, fx)
        }

        proptest! {
            /// Two replicas applying the same calls agree on every result and effect and on
            /// their snapshots; one of them also restarts from its own snapshot now and then,
            /// which must not change anything either.
            #[test]
            fn same_calls_same_results(
                initial in prop::collection::vec(0..TYPES.len() - 1, NAMES.len()),
                ops in prop::collection::vec(op(), 1..80),
            ) {
                let types = ObjectTypes::builtin();
                let mut plain = Registry::default();
                let mut restarted = Registry::default();
                for (name, t) in NAMES.iter().zip(&initial) {
                    let made = plain.create(&types, name, TYPES[*t], &[]);
                    prop_assert_eq!(made, restarted.create(&types, name, TYPES[*t], &[]));
                }
                for (seq, op) in ops.iter().enumerate() {
                    if matches!(op, Op::Snapshot) {
                        let bytes = restarted.save().unwrap();
                        restarted = Registry::restore(&bytes, &types).unwrap();
                    }
                    let seq = seq as u64;
                    prop_assert_eq!(apply(&mut plain, op, seq), apply(&mut restarted, op, seq));
                }
                prop_assert_eq!(plain.list(), restarted.list());
                prop_assert_eq!(plain.save().unwrap(), restarted.save().unwrap());
            }
        }
    }
}
