//! The sandboxed, deterministic Python interpreter that runs user-defined object types
//! (issue 13; the design notes in the README say why RustPython).
//!
//! A user object's state is kept as a msgpack [`Value`] (its instance `__dict__`), never as
//! live interpreter objects: every call rebuilds the instance from that state in this
//! thread's interpreter, runs the method under a step budget, and converts the attributes
//! back, refusing any the snapshot format cannot hold. So the state round-trips through
//! snapshots by construction, a failed call leaves it untouched, and the object stays `Send`
//! while the interpreter (which is not) lives in a thread-local.
//!
//! Determinism: no host environment (the interpreter is built without `os`, files,
//! sockets, clocks or randomness), `import` refused, a fixed hash seed, and a budget counted
//! in executed opcodes through the trace hook — the same count on every replica.

use super::ObjectError;
use crate::command::Value;
use rustpython_vm::builtins::{
    PyBaseExceptionRef, PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyStr, PyTuple,
};
use rustpython_vm::function::FuncArgs;
use rustpython_vm::{AsObject, Interpreter, PyObjectRef, PyResult, Settings, VirtualMachine};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock, mpsc};

/// Opcodes one call may execute before it fails (the same on every replica).
pub const STEP_BUDGET: u64 = 1_000_000;
/// Largest encoded state of one object.
pub const STATE_LIMIT: usize = 1 << 20;
/// Deepest Python call stack of one method call.
const RECURSION_LIMIT: usize = 200;
/// Native stack of the interpreter thread (reserved address space; pages are touched only
/// as deep as the calls go).
const WORKER_STACK: usize = 512 << 20;
/// Deepest nesting of lists, dicts, ... in a state or an argument.
const DEPTH_LIMIT: usize = 64;
/// msgpack extension tags for the Python types msgpack has no word for.
const EXT_TUPLE: i8 = 1;
const EXT_SET: i8 = 2;

/// Builtins a replicated object has no business with: they reach the host, the
/// interpreter's internals, or the code of other objects.
const REMOVED_BUILTINS: &[&str] = &[
    "open",
    "input",
    "print",
    "breakpoint",
    "help",
    "exit",
    "quit",
    "eval",
    "exec",
    "compile",
    "globals",
    "locals",
    "vars",
    "memoryview",
];

/// A user type compiled from its source: the class name and its public methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub class: String,
    pub methods: Vec<String>,
}

struct Sandbox {
    interp: Interpreter,
    /// Compiled classes by source text (each replica compiles the group's copy once).
    classes: RefCell<HashMap<(String, String), PyObjectRef>>,
    steps: Rc<Cell<u64>>,
}

/// Work for the interpreter thread.
type Job = Box<dyn FnOnce(&Sandbox) + Send>;

/// The interpreter runs on one thread of its own with a large stack: a Python frame takes
/// far more native stack than a Rust one, and the replica's own threads must not overflow.
static WORKER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn worker() -> Result<mpsc::Sender<Job>, ObjectError> {
    let unavailable = || ObjectError::runtime("the object interpreter is not running");
    let sender = WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("concoord-python".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let sandbox = Sandbox::new();
                while let Ok(job) = rx.recv() {
                    job(&sandbox);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the object interpreter thread: {e}");
        }
        Mutex::new(tx)
    });
    sender.lock().map(|s| s.clone()).map_err(|_| unavailable())
}

/// Runs `f` on the interpreter thread and waits for its answer.
fn on_interpreter<T: Send + 'static>(
    f: impl FnOnce(&Sandbox, &VirtualMachine) -> Result<T, ObjectError> + Send + 'static,
) -> Result<T, ObjectError> {
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move |sb| {
        let _ = tx.send(sb.interp.enter(|vm| f(sb, vm)));
    });
    worker()?
        .send(job)
        .map_err(|_| ObjectError::runtime("the object interpreter is not running"))?;
    rx.recv()
        .map_err(|_| ObjectError::runtime("the object interpreter stopped during the call"))?
}

impl Sandbox {
    fn new() -> Sandbox {
        let mut settings = Settings::default();
        // Python's str/bytes hashes must not differ between replicas (set iteration order).
        settings.hash_seed = Some(0);
        let interp = Interpreter::without_stdlib(settings);
        interp.enter(|vm| {
            // A build without the host environment has nothing dangerous to import, but
            // nothing may be imported at all: the same code must run on every replica.
            if let Err(e) = restrict_builtins(vm) {
                tracing::error!(
                    "cannot restrict the object interpreter: {}",
                    to_error(vm, &e)
                );
            }
            // Deep recursion must fail with RecursionError before it exhausts the stack of
            // the thread that applies commands.
            vm.recursion_limit.set(RECURSION_LIMIT);
        });
        Sandbox {
            interp,
            classes: RefCell::new(HashMap::new()),
            steps: Rc::new(Cell::new(0)),
        }
    }

    /// Compiles `source` and returns its class `class` (cached).
    fn class(
        &self,
        vm: &VirtualMachine,
        source: &str,
        class: &str,
    ) -> Result<PyObjectRef, ObjectError> {
        let key = (source.to_string(), class.to_string());
        if let Some(c) = self.classes.borrow().get(&key) {
            return Ok(c.clone());
        }
        let code = vm
            .compile(
                source,
                rustpython_vm::compiler::Mode::Exec,
                "<object>".to_owned(),
            )
            .map_err(|e| ObjectError::new("SyntaxError", e.to_string()))?;
        let scope = vm.new_scope_with_builtins();
        self.budgeted(vm, || vm.run_code_obj(code, scope.clone()).map(drop))?;
        let found = scope
            .globals
            .get_item(class, vm)
            .map_err(|_| ObjectError::new("NameError", format!("name '{class}' is not defined")))?;
        if !found.class().is(vm.ctx.types.type_type)
            && !found.fast_isinstance(vm.ctx.types.type_type)
        {
            return Err(ObjectError::type_error(format!("'{class}' is not a class")));
        }
        self.classes.borrow_mut().insert(key, found.clone());
        Ok(found)
    }

    /// Runs `f` with the step budget armed: every opcode of every frame is counted by a
    /// native trace function, which raises once the budget is spent.
    fn budgeted<T>(
        &self,
        vm: &VirtualMachine,
        f: impl FnOnce() -> PyResult<T>,
    ) -> Result<T, ObjectError> {
        self.steps.set(0);
        let steps = self.steps.clone();
        let me: Rc<RefCell<Option<PyObjectRef>>> = Rc::default();
        let local = me.clone();
        let tracer: PyObjectRef = vm
            .new_function(
                "__concoord_budget__",
                move |args: FuncArgs, vm: &VirtualMachine| -> PyResult {
                    steps.set(steps.get() + 1);
                    if steps.get() > STEP_BUDGET {
                        return Err(vm.new_runtime_error(format!(
                            "step budget exceeded: more than {STEP_BUDGET} steps in one call"
                        )));
                    }
                    if let (Some(frame), Some(event)) = (args.args.first(), args.args.get(1))
                        && event.str(vm)?.to_string() == "call"
                    {
                        frame.set_attr("f_trace_opcodes", vm.ctx.new_bool(true), vm)?;
                    }
                    Ok(local.borrow().clone().unwrap_or_else(|| vm.ctx.none()))
                },
            )
            .into();
        *me.borrow_mut() = Some(tracer.clone());
        *vm.trace_func.borrow_mut() = tracer;
        vm.use_tracing.set(true);
        let result = f();
        vm.use_tracing.set(false);
        *vm.trace_func.borrow_mut() = vm.ctx.none();
        // Break the tracer's reference to itself.
        me.borrow_mut().take();
        result.map_err(|e| to_error(vm, &e))
    }
}

/// Replaces `__import__` (nothing may be imported) and removes the builtins that reach
/// outside the object. The interpreter serves user objects only, so this is done to its
/// builtins module itself: `import` statements look `__import__` up there.
fn restrict_builtins(vm: &VirtualMachine) -> PyResult<()> {
    let builtins = vm.builtins.as_object();
    for name in REMOVED_BUILTINS {
        let key = vm.ctx.new_str(*name);
        if builtins.get_attr(&*key, vm).is_ok() {
            builtins.del_attr(&*key, vm)?;
        }
    }
    let import = vm.new_function(
        "__import__",
        |args: FuncArgs, vm: &VirtualMachine| -> PyResult {
            let name = args
                .args
                .first()
                .map(|n| n.str(vm).map(|s| s.to_string()))
                .transpose()?
                .unwrap_or_default();
            Err(vm.new_import_error(
                format!("import of '{name}' is not allowed in a ConCoord object"),
                vm.ctx.new_str(name),
            ))
        },
    );
    builtins.set_attr("__import__", import, vm)
}

/// A Python exception as the error a method call returns: `ValueError: message`.
fn to_error(vm: &VirtualMachine, e: &PyBaseExceptionRef) -> ObjectError {
    let kind = e.class().name().to_string();
    let message = e
        .as_object()
        .str(vm)
        .map(|s| s.to_string())
        .unwrap_or_default();
    ObjectError::new(&kind, message)
}

/// Compiles `source`, finds `class` and lists its public methods; the interpreter's own
/// message for a syntax error, a missing class or one without methods.
pub fn define(source: &str, class: &str) -> Result<TypeInfo, ObjectError> {
    let (source, class) = (source.to_string(), class.to_string());
    on_interpreter(move |sb, vm| {
        let (source, class) = (source.as_str(), class.as_str());
        let cls = sb.class(vm, source, class)?;
        let dir = vm
            .builtins
            .get_attr("dir", vm)
            .map_err(|e| to_error(vm, &e))?;
        let names = dir.call((cls.clone(),), vm).map_err(|e| to_error(vm, &e))?;
        let names = names
            .downcast_ref::<PyList>()
            .map(|l| l.borrow_vec().to_vec())
            .unwrap_or_default();
        let mut methods = Vec::new();
        for n in names {
            let name = n.str(vm).map(|s| s.to_string()).unwrap_or_default();
            if name.starts_with('_') {
                continue;
            }
            let key = vm.ctx.new_str(name.as_str());
            if let Ok(attr) = cls.get_attr(&*key, vm)
                && attr.is_callable()
            {
                methods.push(name);
            }
        }
        methods.sort();
        if methods.is_empty() {
            return Err(ObjectError::type_error(format!(
                "class '{class}' has no methods"
            )));
        }
        Ok(TypeInfo {
            class: class.to_string(),
            methods,
        })
    })
}

/// Runs the constructor with `args` and returns the new object's state.
pub fn construct(source: &str, class: &str, args: &[Value]) -> Result<Value, ObjectError> {
    let (source, class, args) = (source.to_string(), class.to_string(), args.to_vec());
    on_interpreter(move |sb, vm| {
        let cls = sb.class(vm, &source, &class)?;
        let args = to_python_args(vm, &args)?;
        let obj = sb.budgeted(vm, || cls.call(args, vm))?;
        state_of(vm, &obj)
    })
}

/// Calls `method(*args)` on the object whose state is `state`; on success the state is
/// replaced by the object's new attributes, on any error it is left as it was.
pub fn call(
    source: &str,
    class: &str,
    state: &mut Value,
    method: &str,
    args: &[Value],
) -> Result<Value, ObjectError> {
    let (source, class, method) = (source.to_string(), class.to_string(), method.to_string());
    let (before, args) = (state.clone(), args.to_vec());
    let (value, next) = on_interpreter(move |sb, vm| {
        let cls = sb.class(vm, &source, &class)?;
        let obj = instance(vm, &cls, &before)?;
        let args = to_python_args(vm, &args)?;
        let key = vm.ctx.new_str(method.as_str());
        let bound = obj
            .get_attr(&*key, vm)
            .map_err(|_| ObjectError::no_method_dynamic(&class, &method))?;
        let result = sb.budgeted(vm, || bound.call(args, vm))?;
        let value = to_value(vm, &result, false, 0)?;
        Ok((value, state_of(vm, &obj)?))
    })?;
    *state = next;
    Ok(value)
}

/// A fresh instance of `cls` (no `__init__`) holding `state` as its attributes.
fn instance(
    vm: &VirtualMachine,
    cls: &PyObjectRef,
    state: &Value,
) -> Result<PyObjectRef, ObjectError> {
    let obj = vm
        .call_method(cls, "__new__", (cls.clone(),))
        .map_err(|e| to_error(vm, &e))?;
    let dict = obj
        .dict()
        .ok_or_else(|| ObjectError::type_error("instances of this class have no attributes"))?;
    if let Value::Map(entries) = state {
        for (k, v) in entries {
            let key = to_python(vm, k, 0)?;
            let value = to_python(vm, v, 0)?;
            dict.set_item(&*key, value, vm)
                .map_err(|e| to_error(vm, &e))?;
        }
    }
    Ok(obj)
}

/// The instance's attributes as a msgpack map, refusing what a snapshot cannot hold.
fn state_of(vm: &VirtualMachine, obj: &PyObjectRef) -> Result<Value, ObjectError> {
    let dict = obj
        .dict()
        .ok_or_else(|| ObjectError::type_error("instances of this class have no attributes"))?;
    let mut entries = Vec::new();
    for (k, v) in &dict {
        let name = k.str(vm).map(|s| s.to_string()).unwrap_or_default();
        let value = to_value(vm, &v, true, 0)
            .map_err(|e| ObjectError::type_error(format!("attribute '{name}': {}", e.message)))?;
        entries.push((to_value(vm, &k, true, 0)?, value));
    }
    let state = Value::Map(entries);
    let size = rmp_serde::to_vec(&state)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > STATE_LIMIT {
        return Err(ObjectError::new(
            "MemoryError",
            format!("object state of {size} bytes exceeds the limit of {STATE_LIMIT}"),
        ));
    }
    Ok(state)
}

fn to_python_args(vm: &VirtualMachine, args: &[Value]) -> Result<FuncArgs, ObjectError> {
    let args = args
        .iter()
        .map(|a| to_python(vm, a, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FuncArgs::from(args))
}

fn too_deep() -> ObjectError {
    ObjectError::value(format!("values nest deeper than {DEPTH_LIMIT} levels"))
}

/// msgpack to Python: tuples and sets come back from their extension tags.
fn to_python(vm: &VirtualMachine, v: &Value, depth: usize) -> Result<PyObjectRef, ObjectError> {
    if depth > DEPTH_LIMIT {
        return Err(too_deep());
    }
    let ctx = &vm.ctx;
    Ok(match v {
        Value::Nil => ctx.none(),
        Value::Boolean(b) => ctx.new_bool(*b).into(),
        Value::Integer(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ctx.new_int(i).into(),
            (None, Some(u)) => ctx.new_int(u).into(),
            _ => return Err(ObjectError::value("integer out of range")),
        },
        Value::F32(f) => ctx.new_float(f64::from(*f)).into(),
        Value::F64(f) => ctx.new_float(*f).into(),
        Value::String(s) => ctx.new_str(s.as_str().unwrap_or_default()).into(),
        Value::Binary(b) => ctx.new_bytes(b.clone()).into(),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|i| to_python(vm, i, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            ctx.new_list(items).into()
        }
        Value::Map(entries) => {
            let dict = ctx.new_dict();
            for (k, val) in entries {
                let key = to_python(vm, k, depth + 1)?;
                let val = to_python(vm, val, depth + 1)?;
                dict.set_item(&*key, val, vm)
                    .map_err(|e| to_error(vm, &e))?;
            }
            dict.into()
        }
        Value::Ext(tag, data) => {
            let inner: Value = rmp_serde::from_slice(data)
                .map_err(|e| ObjectError::value(format!("bad extension value: {e}")))?;
            let Value::Array(items) = inner else {
                return Err(ObjectError::value("bad extension value"));
            };
            let items = items
                .iter()
                .map(|i| to_python(vm, i, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            match *tag {
                EXT_TUPLE => ctx.new_tuple(items).into(),
                EXT_SET => vm
                    .ctx
                    .types
                    .set_type
                    .as_object()
                    .call((ctx.new_list(items),), vm)
                    .map_err(|e| to_error(vm, &e))?,
                other => {
                    return Err(ObjectError::value(format!(
                        "unknown extension type {other}"
                    )));
                }
            }
        }
    })
}

/// Python to msgpack. `keep_kinds` (state) tags tuples and sets so they come back as
/// such; results for clients carry them as plain lists.
fn to_value(
    vm: &VirtualMachine,
    obj: &PyObjectRef,
    keep_kinds: bool,
    depth: usize,
) -> Result<Value, ObjectError> {
    if depth > DEPTH_LIMIT {
        return Err(too_deep());
    }
    if vm.is_none(obj) {
        return Ok(Value::Nil);
    }
    if obj.is(&vm.ctx.true_value) {
        return Ok(Value::Boolean(true));
    }
    if obj.is(&vm.ctx.false_value) {
        return Ok(Value::Boolean(false));
    }
    if let Some(i) = obj.downcast_ref::<PyInt>() {
        return i.try_to_primitive::<i64>(vm).map(Value::from).map_err(|_| {
            ObjectError::new("OverflowError", "int too large for a replicated object")
        });
    }
    if let Some(f) = obj.downcast_ref::<PyFloat>() {
        return Ok(Value::F64(f.to_f64()));
    }
    if let Some(s) = obj.downcast_ref::<PyStr>() {
        return Ok(Value::from(s.to_string()));
    }
    if let Some(b) = obj.downcast_ref::<PyBytes>() {
        return Ok(Value::Binary(b.as_bytes().to_vec()));
    }
    let seq = |items: Vec<PyObjectRef>| -> Result<Vec<Value>, ObjectError> {
        items
            .iter()
            .map(|i| to_value(vm, i, keep_kinds, depth + 1))
            .collect()
    };
    if let Some(l) = obj.downcast_ref::<PyList>() {
        return Ok(Value::Array(seq(l.borrow_vec().to_vec())?));
    }
    if let Some(t) = obj.downcast_ref::<PyTuple>() {
        let items = Value::Array(seq(t.as_slice().to_vec())?);
        return Ok(if keep_kinds {
            ext(EXT_TUPLE, &items)?
        } else {
            items
        });
    }
    if let Some(s) = obj.downcast_ref::<PySet>() {
        let items = Value::Array(seq(s.elements())?);
        return Ok(if keep_kinds {
            ext(EXT_SET, &items)?
        } else {
            items
        });
    }
    if let Some(d) = obj.downcast_ref::<PyDict>() {
        let mut entries = Vec::new();
        for (k, v) in d {
            entries.push((
                to_value(vm, &k, keep_kinds, depth + 1)?,
                to_value(vm, &v, keep_kinds, depth + 1)?,
            ));
        }
        return Ok(Value::Map(entries));
    }
    Err(ObjectError::type_error(format!(
        "a '{}' cannot be kept in a replicated object (None, bool, int, float, str, bytes, \
         list, tuple, dict and set can)",
        obj.class().name()
    )))
}

fn ext(tag: i8, items: &Value) -> Result<Value, ObjectError> {
    let data = rmp_serde::to_vec(items)
        .map_err(|e| ObjectError::runtime(format!("cannot encode value: {e}")))?;
    Ok(Value::Ext(tag, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_COUNTER: &str = r#"
class TenCounter:
    def __init__(self, value=0):
        self.value = value

    def decrement(self):
        self.value -= 10

    def increment(self):
        self.value += 10

    def getvalue(self):
        return self.value

    def __str__(self):
        return "The counter value is %d" % self.value
"#;

    fn v(x: impl Into<Value>) -> Value {
        x.into()
    }

    #[test]
    fn the_seed_ten_counter_runs() {
        let info = define(TEN_COUNTER, "TenCounter").unwrap();
        assert_eq!(info.methods, ["decrement", "getvalue", "increment"]);
        let mut state = construct(TEN_COUNTER, "TenCounter", &[]).unwrap();
        call(TEN_COUNTER, "TenCounter", &mut state, "increment", &[]).unwrap();
        call(TEN_COUNTER, "TenCounter", &mut state, "increment", &[]).unwrap();
        assert_eq!(
            call(TEN_COUNTER, "TenCounter", &mut state, "getvalue", &[]).unwrap(),
            v(20)
        );
        assert_eq!(
            call(TEN_COUNTER, "TenCounter", &mut state, "__str__", &[]).unwrap(),
            v("The counter value is 20")
        );
        let mut five = construct(TEN_COUNTER, "TenCounter", &[v(5)]).unwrap();
        call(TEN_COUNTER, "TenCounter", &mut five, "decrement", &[]).unwrap();
        assert_eq!(five, Value::Map(vec![(v("value"), v(-5))]));
    }

    #[test]
    fn definitions_are_refused_with_the_interpreter_message() {
        let e = define("class A(:\n  pass", "A").unwrap_err();
        assert_eq!(e.kind, "SyntaxError");
        assert_eq!(define(TEN_COUNTER, "Nope").unwrap_err().kind, "NameError");
        assert_eq!(
            define("class A:\n    pass\n", "A").unwrap_err().message,
            "class 'A' has no methods"
        );
        assert_eq!(
            define("x = 1\n", "x").unwrap_err().message,
            "'x' is not a class"
        );
    }

    const ESCAPES: &str = r#"
class Escape:
    def __init__(self):
        self.n = 0
    def read_file(self):
        return open('/etc/passwd').read()
    def import_os(self):
        return __import__('os').getcwd()
    def import_socket(self):
        import socket
    def spin(self):
        while True:
            pass
    def recurse(self, n=0):
        return self.recurse(n + 1)
    def keep_function(self):
        self.f = lambda: 1
    def evaluate(self):
        return eval('1')
    def raise_value(self):
        raise ValueError('bad value %d' % 3)
"#;

    fn escape(method: &str) -> ObjectError {
        let mut state = construct(ESCAPES, "Escape", &[]).unwrap();
        let before = state.clone();
        let e = call(ESCAPES, "Escape", &mut state, method, &[]).unwrap_err();
        assert_eq!(
            state, before,
            "{method} changed the state although it failed"
        );
        e
    }

    #[test]
    fn the_host_is_out_of_reach() {
        assert_eq!(escape("read_file").kind, "NameError");
        let e = escape("import_os");
        assert_eq!(e.kind, "ImportError");
        assert_eq!(
            e.message,
            "import of 'os' is not allowed in a ConCoord object"
        );
        assert_eq!(escape("import_socket").kind, "ImportError");
        assert_eq!(escape("evaluate").kind, "NameError");
    }

    #[test]
    fn endless_loops_and_recursion_fail_alike_everywhere() {
        let e = escape("spin");
        assert_eq!(e.kind, "RuntimeError");
        assert!(e.message.starts_with("step budget exceeded"), "{e}");
        let e = escape("recurse");
        assert!(
            e.kind == "RecursionError" || e.message.starts_with("step budget exceeded"),
            "{e}"
        );
    }

    #[test]
    fn a_state_the_snapshot_cannot_hold_is_refused_and_rolled_back() {
        let e = escape("keep_function");
        assert_eq!(e.kind, "TypeError");
        assert!(
            e.message
                .starts_with("attribute 'f': a 'function' cannot be kept"),
            "{e}"
        );
        let e = escape("raise_value");
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "bad value 3")
        );
    }

    #[test]
    fn tuples_and_sets_survive_the_state_and_reach_clients_as_lists() {
        let src = "class K:\n    def __init__(self):\n        self.t = (1, 'a')\n        self.s = {3}\n    def add(self, x):\n        self.s.add(x)\n        return (x, sorted(self.s))\n";
        let mut state = construct(src, "K", &[]).unwrap();
        let out = call(src, "K", &mut state, "add", &[v(1)]).unwrap();
        assert_eq!(
            out,
            Value::Array(vec![v(1), Value::Array(vec![v(1), v(3)])])
        );
        let out = call(src, "K", &mut state, "add", &[v(2)]).unwrap();
        assert_eq!(
            out,
            Value::Array(vec![v(2), Value::Array(vec![v(1), v(2), v(3)])])
        );
    }
}
