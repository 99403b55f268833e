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
//! Isolation: a replica runs the interpreter in a worker process of its own ([`worker`]),
//! started from the same binary with a bounded address space, so that one call that asks
//! for gigabytes (`[0] * 10**9`) kills only the worker: the call fails with MemoryError and
//! the replica goes on. Tests and the simulator run the same interpreter on a thread.
//!
//! Determinism: no host environment (the interpreter is built without `os`, files,
//! sockets, clocks or randomness), `import` refused, a fixed hash seed, and a budget counted
//! in executed opcodes through the trace hook — the same count on every replica.

use super::ObjectError;
use crate::command::Value;
use rustpython_vm::builtins::{
    PyBaseExceptionRef, PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyStr, PyTuple,
};
use rustpython_vm::bytecode::{CodeUnits, Instruction};
use rustpython_vm::frame::Frame;
use rustpython_vm::function::FuncArgs;
use rustpython_vm::{AsObject, Interpreter, PyObjectRef, PyResult, Settings, VirtualMachine};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

/// Opcodes one call may execute before it fails (the same on every replica). Every
/// replica's log stands still while a call runs, so the bound is tight: about 50 ms of a
/// release build (a TenCounter increment takes about a dozen steps).
pub const STEP_BUDGET: u64 = 200_000;
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
    // An object's address differs from replica to replica.
    "id",
    "hash",
];

/// The code of a user type, as the interpreter needs it: the source, its digest (which
/// names the compiled class in the interpreter's cache) and the class to take from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    pub sha256: String,
    pub source: Arc<str>,
    pub class: String,
}

impl Code {
    pub fn new(source: &str, class: &str) -> Code {
        Code {
            sha256: sha256_hex(source.as_bytes()),
            source: Arc::from(source),
            class: class.to_string(),
        }
    }
}

/// Lower-case hex SHA-256, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One public method of a user class, as the proxy generator needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Method {
    pub name: String,
    /// Positional parameters after `self`; `None` when the interpreter cannot tell (a
    /// callable that is not a plain function).
    pub params: Option<Vec<String>>,
    /// How many of the last `params` have defaults.
    pub defaults: usize,
    /// Takes `*args`.
    pub varargs: bool,
}

/// A user type compiled from its source: the class name and its public methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    pub class: String,
    pub methods: Vec<Method>,
}

impl TypeInfo {
    pub fn method_names(&self) -> Vec<String> {
        self.methods.iter().map(|m| m.name.clone()).collect()
    }
}

/// Python helpers of the sandbox itself (not user code): they run without the budget.
const HELPERS: &str = r#"
def __concoord_methods__(cls):
    out = []
    for name in dir(cls):
        if name.startswith('_'):
            continue
        f = getattr(cls, name)
        if not callable(f):
            continue
        code = getattr(f, '__code__', None)
        if code is None:
            out.append([name, None, 0, False])
            continue
        n = code.co_argcount
        params = list(code.co_varnames[1:n])
        defaults = getattr(f, '__defaults__', None) or ()
        out.append([name, params, len(defaults), bool(code.co_flags & 4)])
    return out

def __concoord_shows__(cls, which):
    for k in cls.__mro__[:-1]:
        if which in k.__dict__ or (which == '__str__' and '__repr__' in k.__dict__):
            return True
    return False

def __concoord_classes__(scope):
    return sorted(k for k, v in scope.items() if isinstance(v, type))
"#;

pub mod worker;

/// The code a request runs: the source travels only until the interpreter has it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CodeRef {
    sha256: String,
    class: String,
    source: Option<Arc<str>>,
}

/// Work for the interpreter, wherever it runs.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Classes {
        source: String,
    },
    Define {
        code: CodeRef,
    },
    Construct {
        code: CodeRef,
        args: Vec<Value>,
    },
    Call {
        code: CodeRef,
        state: Value,
        method: String,
        args: Vec<Value>,
    },
    Show {
        code: CodeRef,
        state: Value,
        repr: bool,
    },
    /// Several calls in order, each on one of `states` (run by `codes` of the same
    /// index): one round trip for a run of calls the replica applies back to back.
    CallMany {
        codes: Vec<CodeRef>,
        states: Vec<Value>,
        calls: Vec<BatchCall>,
    },
}

/// One call of a [`call_many`] batch: `method(*args)` on object `object` (an index).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchCall {
    pub object: usize,
    pub method: String,
    pub args: Vec<Value>,
}

impl Request {
    fn codes_mut(&mut self) -> Vec<&mut CodeRef> {
        match self {
            Request::Classes { .. } => Vec::new(),
            Request::Define { code }
            | Request::Construct { code, .. }
            | Request::Call { code, .. }
            | Request::Show { code, .. } => vec![code],
            Request::CallMany { codes, .. } => codes.iter_mut().collect(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Classes(Vec<String>),
    Defined(TypeInfo),
    State(Value),
    /// A method's result and the object's new state.
    Called(Value, Value),
    Shown(Option<String>),
    /// Each call's result, and the objects' states after the last call.
    CalledMany(Vec<Result<Value, ObjectError>>, Vec<Value>),
}

fn unexpected(reply: Reply) -> ObjectError {
    ObjectError::runtime(format!(
        "the object interpreter answered out of turn: {reply:?}"
    ))
}

/// Where the interpreter runs: a thread of this process (tests, the simulator) unless the
/// binary asked for a worker process ([`isolate_in_worker_process`]).
static WORKER_PROCESS: OnceLock<worker::Worker> = OnceLock::new();

/// Runs user code in worker processes started from `exe` (the `concoord` binary itself)
/// from now on. Called once, at start-up, by commands that serve objects.
pub fn isolate_in_worker_process(exe: std::path::PathBuf) {
    let _ = WORKER_PROCESS.set(worker::Worker::new(exe));
}

fn execute(req: Request) -> Result<Reply, ObjectError> {
    match WORKER_PROCESS.get() {
        Some(w) => w.execute(req),
        None => on_interpreter(move |sb, vm| sb.handle(vm, req)),
    }
}

/// The code as a request carries it (the in-thread interpreter keeps every source it has
/// seen, so the source is sent along; the worker process keeps track of its own).
fn code_ref(code: &Code) -> CodeRef {
    CodeRef {
        sha256: code.sha256.clone(),
        class: code.class.clone(),
        source: Some(code.source.clone()),
    }
}

struct Sandbox {
    interp: Interpreter,
    /// Compiled classes by (sha256, class): each replica compiles the group's copy once.
    classes: RefCell<HashMap<(String, String), PyObjectRef>>,
    /// Sources by sha256, as requests brought them.
    sources: RefCell<HashMap<String, Arc<str>>>,
    helpers: Option<PyObjectRef>,
    steps: Rc<Cell<u64>>,
    /// The budget's trace function (made once; it returns itself as every frame's local
    /// tracer).
    tracer: PyObjectRef,
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
        let helpers = interp.enter(|vm| {
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
            let scope = vm.new_scope_with_builtins();
            let run = vm
                .compile(
                    HELPERS,
                    rustpython_vm::compiler::Mode::Exec,
                    "<concoord>".into(),
                )
                .map_err(|e| e.to_string())
                .and_then(|code| {
                    vm.run_code_obj(code, scope.clone())
                        .map_err(|e| to_error(vm, &e).to_string())
                });
            match run {
                Ok(_) => Some(scope.globals.into()),
                Err(e) => {
                    tracing::error!("cannot load the object interpreter's helpers: {e}");
                    None
                }
            }
        });
        let steps = Rc::new(Cell::new(0));
        let tracer = interp.enter(|vm| budget_tracer(vm, steps.clone()));
        Sandbox {
            interp,
            classes: RefCell::new(HashMap::new()),
            sources: RefCell::new(HashMap::new()),
            helpers,
            steps,
            tracer,
        }
    }

    /// Calls one of [`HELPERS`].
    fn helper(
        &self,
        vm: &VirtualMachine,
        name: &str,
        args: impl rustpython_vm::function::IntoFuncArgs,
    ) -> Result<PyObjectRef, ObjectError> {
        let helpers = self
            .helpers
            .as_ref()
            .ok_or_else(|| ObjectError::runtime("the object interpreter is not ready"))?;
        let f = helpers.get_item(name, vm).map_err(|e| to_error(vm, &e))?;
        f.call(args, vm).map_err(|e| to_error(vm, &e))
    }

    /// Runs `source` in a fresh scope under the budget and returns the scope's globals.
    fn run_module(&self, vm: &VirtualMachine, source: &str) -> Result<PyObjectRef, ObjectError> {
        let code = vm
            .compile(
                source,
                rustpython_vm::compiler::Mode::Exec,
                "<object>".to_owned(),
            )
            .map_err(|e| ObjectError::new("SyntaxError", e.to_string()))?;
        let scope = vm.new_scope_with_builtins();
        self.budgeted(vm, || vm.run_code_obj(code, scope.clone()).map(drop))?;
        Ok(scope.globals.into())
    }

    /// Compiles the code and returns its class (cached by digest and class name).
    fn class(&self, vm: &VirtualMachine, code: &CodeRef) -> Result<PyObjectRef, ObjectError> {
        let key = (code.sha256.clone(), code.class.clone());
        if let Some(c) = self.classes.borrow().get(&key) {
            return Ok(c.clone());
        }
        if let Some(source) = &code.source {
            self.sources
                .borrow_mut()
                .entry(code.sha256.clone())
                .or_insert_with(|| source.clone());
        }
        let source = self
            .sources
            .borrow()
            .get(&code.sha256)
            .cloned()
            .ok_or_else(|| {
                ObjectError::runtime(format!("the interpreter has no code {}", code.sha256))
            })?;
        let class = code.class.as_str();
        let globals = self.run_module(vm, &source)?;
        let found = globals
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
        *vm.trace_func.borrow_mut() = self.tracer.clone();
        vm.use_tracing.set(true);
        let result = f();
        vm.use_tracing.set(false);
        *vm.trace_func.borrow_mut() = vm.ctx.none();
        result.map_err(|e| to_error(vm, &e))
    }
}

/// The step budget's native trace function, called for every frame that starts. A frame
/// whose code has no backward jump runs each of its instructions at most once, so it is
/// charged its length up front and left untraced; a frame with a loop gets per-opcode
/// events, each charged one step. Either way the count depends on the code alone (the same
/// on every replica), every loop iteration and every call is paid for, and the common
/// straight-line method costs one event instead of one per opcode. The function raises
/// once `steps` passes the budget. It stays alive with the interpreter (it refers to
/// itself).
fn budget_tracer(vm: &VirtualMachine, steps: Rc<Cell<u64>>) -> PyObjectRef {
    let me: Rc<RefCell<Option<PyObjectRef>>> = Rc::default();
    let local = me.clone();
    let tracer: PyObjectRef = vm
        .new_function(
            "__concoord_budget__",
            move |args: FuncArgs, vm: &VirtualMachine| -> PyResult {
                let frame = args.args.first();
                let starts = args
                    .args
                    .get(1)
                    .and_then(|e| e.downcast_ref::<PyStr>())
                    .and_then(|e| e.to_str())
                    == Some("call");
                // A frame that is not a Python frame (none is expected) is traced.
                let straight = match frame.and_then(|f| f.downcast_ref::<Frame>()) {
                    Some(f) if starts => straight_line_length(&f.code.code.instructions),
                    _ => None,
                };
                steps.set(steps.get() + straight.unwrap_or(1));
                if steps.get() > STEP_BUDGET {
                    return Err(vm.new_runtime_error(format!(
                        "step budget exceeded: more than {STEP_BUDGET} steps in one call"
                    )));
                }
                if straight.is_some() {
                    return Ok(vm.ctx.none());
                }
                if starts && let Some(frame) = frame {
                    frame.set_attr("f_trace_opcodes", vm.ctx.new_bool(true), vm)?;
                }
                Ok(local.borrow().clone().unwrap_or_else(|| vm.ctx.none()))
            },
        )
        .into();
    *me.borrow_mut() = Some(tracer.clone());
    tracer
}

/// The number of instructions of code that cannot loop (no backward jump), or `None` when
/// it can.
fn straight_line_length(code: &CodeUnits) -> Option<u64> {
    let loops = (0..code.len()).any(|i| {
        matches!(
            code.read_op(i).deoptimize(),
            Instruction::JumpBackward { .. } | Instruction::JumpBackwardNoInterrupt { .. }
        )
    });
    (!loops).then_some(code.len() as u64)
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

impl Sandbox {
    /// Runs one request on this interpreter.
    fn handle(&self, vm: &VirtualMachine, req: Request) -> Result<Reply, ObjectError> {
        match req {
            Request::Classes { source } => {
                let globals = self.run_module(vm, &source)?;
                let names = self.helper(vm, "__concoord_classes__", (globals,))?;
                let names = match to_value(vm, &names, false, 0)? {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                Ok(Reply::Classes(names))
            }
            Request::Define { code } => self.define(vm, &code).map(Reply::Defined),
            Request::Construct { code, args } => {
                let cls = self.class(vm, &code)?;
                let args = to_python_args(vm, &args)?;
                let obj = self.budgeted(vm, || cls.call(args, vm))?;
                Ok(Reply::State(state_of(vm, &obj)?))
            }
            Request::Call {
                code,
                state,
                method,
                args,
            } => {
                let (value, next) = self.call_one(vm, &code, &state, &method, &args)?;
                Ok(Reply::Called(value, next))
            }
            Request::CallMany {
                codes,
                mut states,
                calls,
            } => {
                let mut results = Vec::with_capacity(calls.len());
                for c in calls {
                    let (Some(code), Some(state)) = (codes.get(c.object), states.get(c.object))
                    else {
                        results.push(Err(ObjectError::runtime("a call names no object")));
                        continue;
                    };
                    match self.call_one(vm, code, state, &c.method, &c.args) {
                        Ok((value, next)) => {
                            states[c.object] = next;
                            results.push(Ok(value));
                        }
                        Err(e) => results.push(Err(e)),
                    }
                }
                Ok(Reply::CalledMany(results, states))
            }
            Request::Show { code, state, repr } => {
                let which = if repr { "__repr__" } else { "__str__" };
                let cls = self.class(vm, &code)?;
                let defined = self.helper(
                    vm,
                    "__concoord_shows__",
                    (cls.clone(), vm.ctx.new_str(which)),
                )?;
                if !defined.is(&vm.ctx.true_value) {
                    return Ok(Reply::Shown(None));
                }
                let obj = instance(vm, &cls, &state)?;
                let shown = self.budgeted(vm, || if repr { obj.repr(vm) } else { obj.str(vm) })?;
                Ok(Reply::Shown(Some(shown.to_string())))
            }
        }
    }

    /// One method call on an object whose state is `state`: the result and the new state.
    fn call_one(
        &self,
        vm: &VirtualMachine,
        code: &CodeRef,
        state: &Value,
        method: &str,
        args: &[Value],
    ) -> Result<(Value, Value), ObjectError> {
        let cls = self.class(vm, code)?;
        let obj = instance(vm, &cls, state)?;
        let args = to_python_args(vm, args)?;
        let key = vm.ctx.new_str(method);
        let bound = obj
            .get_attr(&*key, vm)
            .map_err(|_| ObjectError::no_method(&code.class, method))?;
        let result = self.budgeted(vm, || bound.call(args, vm))?;
        let value = to_value(vm, &result, false, 0)?;
        Ok((value, state_of(vm, &obj)?))
    }

    fn define(&self, vm: &VirtualMachine, code: &CodeRef) -> Result<TypeInfo, ObjectError> {
        let cls = self.class(vm, code)?;
        let listed = self.helper(vm, "__concoord_methods__", (cls,))?;
        let listed = to_value(vm, &listed, false, 0)?;
        let mut methods = Vec::new();
        for m in listed.as_array().into_iter().flatten() {
            let Some(fields) = m.as_array() else { continue };
            let name = fields.first().and_then(Value::as_str).unwrap_or_default();
            let params = fields.get(1).and_then(Value::as_array).map(|ps| {
                ps.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            });
            let defaults = fields.get(2).and_then(Value::as_u64).unwrap_or(0) as usize;
            let varargs = fields.get(3).and_then(Value::as_bool).unwrap_or(false);
            methods.push(Method {
                name: name.to_string(),
                params,
                defaults,
                varargs,
            });
        }
        if methods.is_empty() {
            return Err(ObjectError::type_error(format!(
                "class '{}' has no methods",
                code.class
            )));
        }
        Ok(TypeInfo {
            class: code.class.clone(),
            methods,
        })
    }
}

/// The classes `source` defines at its top level, by name (for `type load` without
/// `--class`).
pub fn classes(source: &str) -> Result<Vec<String>, ObjectError> {
    match execute(Request::Classes {
        source: source.to_string(),
    })? {
        Reply::Classes(names) => Ok(names),
        other => Err(unexpected(other)),
    }
}

/// Compiles the code, finds its class and lists its public methods; the interpreter's own
/// message for a syntax error, a missing class or one without methods.
pub fn define(code: &Code) -> Result<TypeInfo, ObjectError> {
    match execute(Request::Define {
        code: code_ref(code),
    })? {
        Reply::Defined(info) => Ok(info),
        other => Err(unexpected(other)),
    }
}

/// Runs the constructor with `args` and returns the new object's state.
pub fn construct(code: &Code, args: &[Value]) -> Result<Value, ObjectError> {
    match execute(Request::Construct {
        code: code_ref(code),
        args: args.to_vec(),
    })? {
        Reply::State(state) => Ok(state),
        other => Err(unexpected(other)),
    }
}

/// Calls `method(*args)` on the object whose state is `state`; on success the state is
/// replaced by the object's new attributes, on any error it is left as it was.
pub fn call(
    code: &Code,
    state: &mut Value,
    method: &str,
    args: &[Value],
) -> Result<Value, ObjectError> {
    match execute(Request::Call {
        code: code_ref(code),
        state: state.clone(),
        method: method.to_string(),
        args: args.to_vec(),
    })? {
        Reply::Called(value, next) => {
            *state = next;
            Ok(value)
        }
        other => Err(unexpected(other)),
    }
}

/// Runs `calls` in order on `objects` (code and state each), as [`call`] would one by one:
/// each call's result, and each object's state replaced by its state after its last
/// successful call. One round trip to the interpreter for the whole run; should the
/// interpreter fail as a whole (a worker that ran out of memory), the calls are run one by
/// one instead, so the outcome is always that of calling them in turn.
pub fn call_many(
    objects: &mut [(Code, Value)],
    calls: &[BatchCall],
) -> Vec<Result<Value, ObjectError>> {
    if calls.len() > 1 {
        let req = Request::CallMany {
            codes: objects.iter().map(|(code, _)| code_ref(code)).collect(),
            states: objects.iter().map(|(_, state)| state.clone()).collect(),
            calls: calls.to_vec(),
        };
        if let Ok(Reply::CalledMany(results, states)) = execute(req)
            && results.len() == calls.len()
            && states.len() == objects.len()
        {
            for ((_, state), next) in objects.iter_mut().zip(states) {
                *state = next;
            }
            return results;
        }
    }
    calls
        .iter()
        .map(|c| match objects.get_mut(c.object) {
            Some((code, state)) => call(code, state, &c.method, &c.args),
            None => Err(ObjectError::runtime("a call names no object")),
        })
        .collect()
}

/// `str()` (or, with `repr`, `repr()`) of the object, when its class defines one;
/// `None` when it does not, since Python's default shows an address that differs from
/// replica to replica.
pub fn show(code: &Code, state: &Value, repr: bool) -> Result<Option<String>, ObjectError> {
    match execute(Request::Show {
        code: code_ref(code),
        state: state.clone(),
        repr,
    })? {
        Reply::Shown(text) => Ok(text),
        other => Err(unexpected(other)),
    }
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

    fn code(source: &str, class: &str) -> Code {
        Code::new(source, class)
    }

    #[test]
    fn the_seed_ten_counter_runs() {
        let ten = code(TEN_COUNTER, "TenCounter");
        let info = define(&ten).unwrap();
        assert_eq!(info.method_names(), ["decrement", "getvalue", "increment"]);
        let mut state = construct(&ten, &[]).unwrap();
        call(&ten, &mut state, "increment", &[]).unwrap();
        call(&ten, &mut state, "increment", &[]).unwrap();
        assert_eq!(call(&ten, &mut state, "getvalue", &[]).unwrap(), v(20));
        assert_eq!(
            show(&ten, &state, false).unwrap().as_deref(),
            Some("The counter value is 20")
        );
        // No __repr__ of its own: Python's would show an address.
        assert_eq!(show(&ten, &state, true).unwrap(), None);
        let mut five = construct(&ten, &[v(5)]).unwrap();
        call(&ten, &mut five, "decrement", &[]).unwrap();
        assert_eq!(five, Value::Map(vec![(v("value"), v(-5))]));
    }

    #[test]
    fn signatures_and_classes_are_listed() {
        let src = "class A:\n    def f(self, a, b=1):\n        pass\n    def g(self, *rest):\n        pass\nclass B:\n    pass\n";
        assert_eq!(classes(src).unwrap(), ["A", "B"]);
        let info = define(&code(src, "A")).unwrap();
        assert_eq!(
            info.methods,
            [
                Method {
                    name: "f".into(),
                    params: Some(vec!["a".into(), "b".into()]),
                    defaults: 1,
                    varargs: false
                },
                Method {
                    name: "g".into(),
                    params: Some(vec![]),
                    defaults: 0,
                    varargs: true
                }
            ]
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn definitions_are_refused_with_the_interpreter_message() {
        let e = define(&code("class A(:\n  pass", "A")).unwrap_err();
        assert_eq!(e.kind, "SyntaxError");
        assert_eq!(
            define(&code(TEN_COUNTER, "Nope")).unwrap_err().kind,
            "NameError"
        );
        assert_eq!(
            define(&code("class A:\n    pass\n", "A"))
                .unwrap_err()
                .message,
            "class 'A' has no methods"
        );
        assert_eq!(
            define(&code("x = 1\n", "x")).unwrap_err().message,
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
    def fan_out(self, n=40):
        return 1 if n == 0 else self.fan_out(n - 1) + self.fan_out(n - 1)
    def spin_one_line(self):
        while True: pass
    def spin_in_generator(self):
        return sum(1 for _ in iter(int, 1))
    def spin_in_comprehension(self):
        return len([x for x in iter(int, 1)])
    def keep_function(self):
        self.f = lambda: 1
    def evaluate(self):
        return eval('1')
    def raise_value(self):
        raise ValueError('bad value %d' % 3)
    def address(self):
        return id(self)
    def clock(self):
        import time
    def dice(self):
        import random
    def globals_trick(self):
        return self.raise_value.__globals__['__builtins__']['open']
"#;

    fn escape(method: &str) -> ObjectError {
        let escapes = code(ESCAPES, "Escape");
        let mut state = construct(&escapes, &[]).unwrap();
        let before = state.clone();
        let e = call(&escapes, &mut state, method, &[]).unwrap_err();
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
        assert_eq!(escape("address").kind, "NameError");
        assert_eq!(escape("clock").kind, "ImportError");
        assert_eq!(escape("dice").kind, "ImportError");
        let e = escape("globals_trick");
        assert!(
            ["KeyError", "TypeError", "AttributeError"].contains(&e.kind.as_str()),
            "{e}"
        );
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
        // Straight-line frames are charged their length up front rather than traced: an
        // exponential fan-out of calls without a single loop still runs out.
        for method in [
            "fan_out",
            "spin_one_line",
            "spin_in_generator",
            "spin_in_comprehension",
        ] {
            let e = escape(method);
            assert_eq!(e.kind, "RuntimeError", "{method}: {e}");
            assert!(
                e.message.starts_with("step budget exceeded"),
                "{method}: {e}"
            );
        }
    }

    /// Steps are counted from the code alone: a straight-line method costs its length, a
    /// loop one step per opcode it runs, and the same call is refused at the same point.
    #[test]
    fn the_budget_counts_loops_and_straight_code_alike_everywhere() {
        let src = "class L:\n    def __init__(self):\n        self.n = 0\n    def loop(self, k):\n        for _ in range(k):\n            self.n += 1\n        return self.n\n";
        let l = code(src, "L");
        let mut state = construct(&l, &[]).unwrap();
        // Far inside the budget, and then far beyond it.
        assert_eq!(call(&l, &mut state, "loop", &[v(1000)]).unwrap(), v(1000));
        let e = call(&l, &mut state, "loop", &[v(1_000_000)]).unwrap_err();
        assert!(e.message.starts_with("step budget exceeded"), "{e}");
        assert_eq!(state, Value::Map(vec![(v("n"), v(1000))]));
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
        let k = code(src, "K");
        let mut state = construct(&k, &[]).unwrap();
        let out = call(&k, &mut state, "add", &[v(1)]).unwrap();
        assert_eq!(
            out,
            Value::Array(vec![v(1), Value::Array(vec![v(1), v(3)])])
        );
        let out = call(&k, &mut state, "add", &[v(2)]).unwrap();
        assert_eq!(
            out,
            Value::Array(vec![v(2), Value::Array(vec![v(1), v(2), v(3)])])
        );
    }
}
