//! The replicated state machine applied to decided commands: client sessions, the
//! exactly-once reply cache, and the objects.
//!
//! Every replica applies the same commands in the same order and so holds the same state;
//! which replica answers a client is the runtime's business, not this module's.

use crate::command::{ClientCommand, Command, Operation, SessionId, Value};
use crate::net::wire::ReplyResult;
use crate::object::{
    CallId, CallResult, Effects, ObjectError, ObjectTypes, Outcome, Registry, UserType,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Replies kept per session at most, whatever the client acknowledges, so a client that
/// never acknowledges cannot grow a replica's memory without bound.
pub const MAX_CACHED_REPLIES: usize = 4096;

/// A command's reply that a client should now receive.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub session: SessionId,
    pub seq: u64,
    pub result: ReplyResult,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Cached {
    Done(ReplyResult),
    /// The call waits inside an object (a held lock, say).
    Parked,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
struct Session {
    /// The client has every reply below this sequence number.
    acked_below: u64,
    replies: BTreeMap<u64, Cached>,
    /// Replies below this were dropped from the cache unacknowledged (too many calls in
    /// flight): a retry of one must not run the call again.
    #[serde(default)]
    evicted_below: u64,
    /// The identity that opened the session (`ClientCommand::owner`): only it may use the
    /// session, so nobody can close, acknowledge for or call in another's session.
    #[serde(default)]
    owner: Option<String>,
}

/// A call on a user-defined object whose running is put off to the end of its run of such
/// calls (see [`StateMachine::apply_slot`]).
#[derive(Debug)]
struct Deferred {
    call: CallId,
    object: String,
    method: String,
    args: Vec<Value>,
}

/// Sessions, replies and objects.
#[derive(Debug)]
pub struct StateMachine {
    types: ObjectTypes,
    objects: Registry,
    sessions: BTreeMap<SessionId, Session>,
    /// User-object calls decided but not run yet (see [`StateMachine::apply_slot`]).
    deferred: Vec<Deferred>,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine::new(ObjectTypes::builtin())
    }
}

impl StateMachine {
    pub fn new(types: ObjectTypes) -> StateMachine {
        StateMachine {
            types,
            objects: Registry::default(),
            sessions: BTreeMap::new(),
            deferred: Vec::new(),
        }
    }

    pub fn types(&self) -> &ObjectTypes {
        &self.types
    }

    /// The identity that opened `session` (None: none, or auth off).
    pub fn session_owner(&self, session: SessionId) -> Option<Option<&str>> {
        self.sessions.get(&session).map(|s| s.owner.as_deref())
    }

    pub fn has_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the call changes no state (see [`Registry::is_read_only`]).
    pub fn is_read_only(&self, object: &str, method: &str) -> bool {
        self.objects.is_read_only(object, method)
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// What a retry of (session, seq) should get without going through consensus again:
    /// `Some(Some(result))` for a finished command, `Some(None)` for a parked one, `None`
    /// when the command is unknown here.
    pub fn cached(&self, session: SessionId, seq: u64) -> Option<Option<&ReplyResult>> {
        let s = self.sessions.get(&session)?;
        match s.replies.get(&seq)? {
            Cached::Done(r) => Some(Some(r)),
            Cached::Parked => Some(None),
        }
    }

    /// Applies one decided command and returns the replies clients should now get: its
    /// own (unless it parked) and those of parked calls it released.
    pub fn apply(&mut self, cmd: &Command) -> Vec<Completion> {
        self.apply_batch(std::slice::from_ref(cmd))
    }

    /// Applies the commands of one decided slot in order, user-object calls included (see
    /// [`StateMachine::apply_slot`]): nothing is left put off.
    pub fn apply_batch(&mut self, cmds: &[Command]) -> Vec<Completion> {
        let mut done = self.apply_slot(cmds);
        self.run_deferred(&mut done);
        done
    }

    /// Applies the commands of one decided slot in order, except that calls on user-defined
    /// objects are put off and run together, one interpreter round trip per run of them
    /// (possibly spanning slots): such a call parks nothing, touches no other object and no
    /// session, so putting it off until the next command that could observe it (anything
    /// but another such call) changes no result; only when its reply is sent differs. Until
    /// then a retry finds it in progress. The driver runs what is left with
    /// [`StateMachine::run_put_off`] before it reads the state as a whole.
    pub fn apply_slot(&mut self, cmds: &[Command]) -> Vec<Completion> {
        let mut done = Vec::new();
        for cmd in cmds {
            if !self.may_defer(cmd) {
                self.run_deferred(&mut done);
            }
            self.apply_one(cmd, &mut done);
        }
        done
    }

    /// Whether user-object calls wait to be run.
    pub fn has_put_off(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Runs the user-object calls [`StateMachine::apply_slot`] put off; their replies.
    pub fn run_put_off(&mut self) -> Vec<Completion> {
        let mut done = Vec::new();
        self.run_deferred(&mut done);
        done
    }

    /// Whether `cmd` is a call that [`StateMachine::apply_slot`] may put off. A session has
    /// at most one call put off: its next command (which may acknowledge that call's reply,
    /// or retry it) comes after that call has run, as it would one by one, so the session's
    /// reply cache goes through the same steps either way.
    fn may_defer(&self, cmd: &Command) -> bool {
        matches!(cmd, Command::Client(ClientCommand {
            session,
            op: Operation::Call { object, method, .. },
            ..
        }) if self.may_defer_call(*session, object, method))
    }

    /// A plain call on a user-defined object (special methods run in order) from a session
    /// with no call put off yet.
    fn may_defer_call(&self, session: SessionId, object: &str, method: &str) -> bool {
        !method.starts_with('_')
            && self.objects.is_user_object(object)
            && !self.deferred.iter().any(|d| d.call.session == session)
    }

    /// Runs the put-off calls and records their replies.
    fn run_deferred(&mut self, done: &mut Vec<Completion>) {
        if self.deferred.is_empty() {
            return;
        }
        let deferred = std::mem::take(&mut self.deferred);
        let mut names: Vec<&str> = Vec::new();
        let mut calls = Vec::with_capacity(deferred.len());
        for d in &deferred {
            let index = match names.iter().position(|n| *n == d.object) {
                Some(i) => i,
                None => {
                    names.push(&d.object);
                    names.len() - 1
                }
            };
            calls.push(crate::object::sandbox::BatchCall {
                object: index,
                method: d.method.clone(),
                args: d.args.clone(),
            });
        }
        let mut objects: Vec<_> = names
            .iter()
            .filter_map(|n| self.objects.user_parts(n))
            .collect();
        let results = if objects.len() == names.len() {
            crate::object::sandbox::call_many(&mut objects, &calls)
        } else {
            // Cannot happen: nothing between deferring and running removes an object.
            calls
                .iter()
                .map(|_| Err(ObjectError::runtime("the object is gone")))
                .collect()
        };
        for (name, (_, state)) in names.iter().zip(objects) {
            self.objects.set_user_state(name, state);
        }
        for (d, result) in deferred.iter().zip(results) {
            self.record(d.call, Outcome::Done(result), done);
        }
    }

    fn apply_one(&mut self, cmd: &Command, done: &mut Vec<Completion>) {
        match cmd {
            Command::Client(c) => self.apply_client(c, done),
            Command::ExpireSession(session) => self.end_session(*session, done),
            Command::EnsureType {
                module,
                class,
                source,
            } => {
                let dotted = format!("{module}.{class}");
                if self.types.user_types().all(|t| t.dotted_name() != dotted) {
                    // Like EnsureObject: a bad file is reported by the replica that read it.
                    let _ = self.define_type(module, class, source, false);
                }
            }
            Command::EnsureObject {
                name,
                type_name,
                args,
            } => {
                if !self.objects.contains(name) {
                    // A bad default object is the operator's mistake, reported in the log
                    // of the replica that asked for it; nothing to reply to.
                    let _ = self.objects.create(&self.types, name, type_name, args);
                }
            }
        }
    }

    fn apply_client(&mut self, c: &ClientCommand, done: &mut Vec<Completion>) {
        // Another identity's session is refused before anything of it is touched.
        if let Some(session) = self.sessions.get(&c.session)
            && session.owner != c.owner
        {
            done.push(Completion {
                session: c.session,
                seq: c.seq,
                result: ReplyResult::Err {
                    kind: "PermissionError".into(),
                    message: "this session belongs to another identity".into(),
                },
            });
            return;
        }
        if c.op == Operation::OpenSession {
            // A retried open finds its session already there: same answer.
            self.sessions.entry(c.session).or_insert_with(|| Session {
                owner: c.owner.clone(),
                ..Session::default()
            });
            done.push(Completion {
                session: c.session,
                seq: c.seq,
                result: ReplyResult::Ok(Value::Nil),
            });
            return;
        }
        let Some(session) = self.sessions.get_mut(&c.session) else {
            done.push(Completion {
                session: c.session,
                seq: c.seq,
                result: ReplyResult::SessionExpired,
            });
            return;
        };
        if c.ack > session.acked_below {
            session.acked_below = c.ack;
            let keep = session.replies.split_off(&c.ack);
            session.replies = keep;
        }
        if c.seq < session.acked_below {
            // A stale duplicate of a command whose reply the client already has.
            return;
        }
        match session.replies.get(&c.seq) {
            Some(Cached::Done(result)) => {
                done.push(Completion {
                    session: c.session,
                    seq: c.seq,
                    result: result.clone(),
                });
                return;
            }
            Some(Cached::Parked) => return,
            None if c.seq < session.evicted_below => {
                done.push(Completion {
                    session: c.session,
                    seq: c.seq,
                    result: ReplyResult::Err {
                        kind: "RuntimeError".into(),
                        message: format!(
                            "the reply of call {} was dropped (more than {MAX_CACHED_REPLIES} calls unacknowledged); it may or may not have run",
                            c.seq
                        ),
                    },
                });
                return;
            }
            None => {}
        }
        let call = CallId {
            session: c.session,
            seq: c.seq,
        };
        let mut fx = Effects::default();
        let outcome = match &c.op {
            Operation::OpenSession => Outcome::Done(Ok(Value::Nil)),
            Operation::CloseSession => {
                self.end_session(c.session, done);
                done.push(Completion {
                    session: c.session,
                    seq: c.seq,
                    result: ReplyResult::Ok(Value::Nil),
                });
                return;
            }
            Operation::Call {
                object,
                method,
                args,
            } if self.may_defer_call(c.session, object, method) => {
                // Run with the rest of its run of user-object calls (apply_slot); until
                // then a retry finds it in progress.
                if let Some(session) = self.sessions.get_mut(&c.session) {
                    session.replies.insert(c.seq, Cached::Parked);
                }
                self.deferred.push(Deferred {
                    call,
                    object: object.clone(),
                    method: method.clone(),
                    args: args.clone(),
                });
                return;
            }
            Operation::Call {
                object,
                method,
                args,
            } => self.objects.invoke(call, object, method, args, &mut fx),
            Operation::Create {
                name,
                type_name,
                args,
            } => Outcome::Done(self.objects.create(&self.types, name, type_name, args)),
            Operation::Delete { name } => Outcome::Done(self.objects.delete(name, &mut fx)),
            Operation::List => Outcome::Done(Ok(self.objects.list())),
            Operation::DefineType {
                module,
                class,
                source,
                replace,
            } => Outcome::Done(self.define_type(module, class, source, *replace)),
            Operation::ListTypes => Outcome::Done(Ok(self.list_types())),
            Operation::ShowType { name } => Outcome::Done(self.show_type(name)),
        };
        self.record(call, outcome, done);
        self.complete_parked(fx, done);
    }

    /// Compiles and adds (or replaces) a user type. Nothing changes when the code is
    /// refused or a live object's state does not fit the new code.
    fn define_type(
        &mut self,
        module: &str,
        class: &str,
        source: &str,
        replace: bool,
    ) -> CallResult {
        // No class named: the source's only class (the same answer on every replica).
        let picked;
        let class = if class.is_empty() {
            picked = crate::object::user::only_class(source)?;
            picked.as_str()
        } else {
            class
        };
        let ty = UserType::compile(module, class, source)?;
        let dotted = ty.dotted_name();
        let before = self
            .types
            .user_types()
            .find(|t| t.dotted_name() == dotted)
            .cloned();
        let mut next = self.types.clone();
        let ty = next.define(ty, replace)?;
        // Live objects need the new code only when the code changed (the same code again
        // is a no-op that returns the type already defined).
        if before.is_some_and(|old| !Arc::ptr_eq(&old, &ty)) {
            self.objects.retype(&ty)?;
        }
        self.types = next;
        Ok(type_summary(&ty, self.objects.count_of(&dotted), false))
    }

    fn list_types(&self) -> Value {
        Value::Array(
            self.types
                .user_types()
                .map(|t| type_summary(t, self.objects.count_of(&t.dotted_name()), false))
                .collect(),
        )
    }

    fn show_type(&self, name: &str) -> CallResult {
        match self.types.resolve(name) {
            Some(crate::object::ObjectType::User(t)) => Ok(type_summary(
                &t,
                self.objects.count_of(&t.dotted_name()),
                true,
            )),
            Some(crate::object::ObjectType::Builtin(t)) => Err(ObjectError::value(format!(
                "'{}' is a built-in type",
                t.dotted_name()
            ))),
            None => Err(ObjectError::key(format!("no object type '{name}'"))),
        }
    }

    fn record(&mut self, call: CallId, outcome: Outcome, done: &mut Vec<Completion>) {
        let Some(session) = self.sessions.get_mut(&call.session) else {
            return;
        };
        match outcome {
            Outcome::Parked => {
                session.replies.insert(call.seq, Cached::Parked);
            }
            Outcome::Done(result) => {
                let result = reply_of(result);
                session
                    .replies
                    .insert(call.seq, Cached::Done(result.clone()));
                trim(session);
                done.push(Completion {
                    session: call.session,
                    seq: call.seq,
                    result,
                });
            }
        }
    }

    /// Parked calls that an effect released get their reply now.
    fn complete_parked(&mut self, fx: Effects, done: &mut Vec<Completion>) {
        for (call, result) in fx.completed {
            let Some(session) = self.sessions.get_mut(&call.session) else {
                continue;
            };
            if session.replies.get(&call.seq) != Some(&Cached::Parked) {
                continue;
            }
            let result = reply_of(result);
            session
                .replies
                .insert(call.seq, Cached::Done(result.clone()));
            trim(session);
            done.push(Completion {
                session: call.session,
                seq: call.seq,
                result,
            });
        }
    }

    /// Ends a session: its locks and permits are released (which may grant parked calls
    /// of others) and its own parked calls are dropped.
    fn end_session(&mut self, session: SessionId, done: &mut Vec<Completion>) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        let mut fx = Effects::default();
        self.objects.session_expired(session, &mut fx);
        self.complete_parked(fx, done);
        // Anyone still waiting on this session's parked calls learns the session is gone.
        for (seq, cached) in s.replies {
            if cached == Cached::Parked {
                done.push(Completion {
                    session,
                    seq,
                    result: ReplyResult::SessionExpired,
                });
            }
        }
    }

    /// Serialized sessions, objects and user types, for snapshots and state transfer.
    pub fn save(&self) -> Result<Vec<u8>, ObjectError> {
        if self.has_put_off() {
            // A snapshot must hold every decided call's effect, not a parked placeholder.
            return Err(ObjectError::runtime(
                "decided user-object calls have not run yet",
            ));
        }
        let saved = SavingState {
            sessions: &self.sessions,
            objects: self.objects.save()?,
            user_types: self.types.user_types().map(|t| &**t).collect(),
        };
        rmp_serde::to_vec(&saved)
            .map_err(|e| ObjectError::runtime(format!("cannot encode state: {e}")))
    }

    /// Rebuilds the state from `save()` bytes onto the compiled-in `types` (any user types
    /// in `types` are dropped: the snapshot's are the group's).
    pub fn restore(types: ObjectTypes, bytes: &[u8]) -> Result<StateMachine, ObjectError> {
        let saved: SavedState = rmp_serde::from_slice(bytes)
            .map_err(|e| ObjectError::runtime(format!("cannot decode state: {e}")))?;
        let mut types = types.without_user_types();
        for ty in saved.user_types {
            // The code was accepted when it was defined; its compiled form is rebuilt
            // lazily by the interpreter on the first call.
            types.define(ty, false)?;
        }
        let objects = Registry::restore(&saved.objects, &types)?;
        Ok(StateMachine {
            types,
            objects,
            sessions: saved.sessions,
            deferred: Vec::new(),
        })
    }
}

/// What a snapshot holds. Saved as a msgpack array, as the (sessions, objects) pair it
/// extends: a snapshot from before user types restores with none.
#[derive(Deserialize)]
struct SavedState {
    sessions: BTreeMap<SessionId, Session>,
    objects: Vec<u8>,
    #[serde(default)]
    user_types: Vec<UserType>,
}

/// [`SavedState`] as `save` writes it, borrowing the sessions and types rather than copying
/// them (same fields, same order, same encoding).
#[derive(Serialize)]
struct SavingState<'a> {
    sessions: &'a BTreeMap<SessionId, Session>,
    objects: Vec<u8>,
    user_types: Vec<&'a UserType>,
}

/// A user type as `type list` and `type show` report it.
fn type_summary(t: &UserType, objects: usize, with_source: bool) -> Value {
    let mut fields = vec![
        (Value::from("name"), Value::from(t.dotted_name())),
        (Value::from("sha256"), Value::from(t.sha256.as_str())),
        (Value::from("size"), Value::from(t.source.len() as u64)),
        (
            Value::from("methods"),
            Value::Array(
                t.methods
                    .iter()
                    .map(|m| Value::from(m.name.as_str()))
                    .collect(),
            ),
        ),
        (Value::from("objects"), Value::from(objects as u64)),
    ];
    if with_source {
        fields.push((Value::from("source"), Value::from(&*t.source)));
    }
    Value::Map(fields)
}

fn reply_of(result: CallResult) -> ReplyResult {
    match result {
        Ok(v) => ReplyResult::Ok(v),
        Err(e) => ReplyResult::Err {
            kind: e.kind,
            message: e.message,
        },
    }
}

/// Drops the oldest finished replies past the cap; parked calls are never dropped.
fn trim(session: &mut Session) {
    while session.replies.len() > MAX_CACHED_REPLIES {
        let oldest_done = session
            .replies
            .iter()
            .find(|(_, c)| matches!(c, Cached::Done(_)))
            .map(|(seq, _)| *seq);
        match oldest_done {
            Some(seq) => {
                session.replies.remove(&seq);
                session.evicted_below = session.evicted_below.max(seq + 1);
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(session: SessionId, seq: u64, ack: u64, op: Operation) -> Command {
        Command::Client(ClientCommand {
            session,
            seq,
            ack,
            op,
            owner: None,
        })
    }

    fn owned(session: SessionId, seq: u64, ack: u64, op: Operation, owner: &str) -> Command {
        Command::Client(ClientCommand {
            session,
            seq,
            ack,
            op,
            owner: Some(owner.to_string()),
        })
    }

    /// Only the identity that opened a session may use it: another's commands, its close
    /// and its acknowledgements are refused and change nothing, on every replica alike.
    #[test]
    fn a_session_belongs_to_the_identity_that_opened_it() {
        let mut sm = StateMachine::new(ObjectTypes::builtin());
        let create = Operation::Create {
            name: "c".into(),
            type_name: "Counter".into(),
            args: vec![],
        };
        sm.apply(&owned(7, 0, 0, Operation::OpenSession, "token:app"));
        sm.apply(&owned(7, 1, 1, create, "token:app"));
        sm.apply(&owned(7, 2, 1, incr(), "token:app"));
        let refused = |sm: &mut StateMachine, cmd: Command| {
            let done = sm.apply(&cmd);
            assert!(
                matches!(&done[..], [c] if matches!(&c.result,
                    ReplyResult::Err { kind, .. } if kind == "PermissionError")),
                "{done:?}"
            );
        };
        refused(
            &mut sm,
            owned(7, 3, 3, Operation::CloseSession, "token:reader"),
        );
        refused(&mut sm, owned(7, 3, 3, incr(), "token:reader"));
        refused(
            &mut sm,
            owned(7, 0, 0, Operation::OpenSession, "token:reader"),
        );
        refused(&mut sm, cmd(7, 3, 3, incr()));
        // The owner's session is whole: open, its reply of seq 2 still cached.
        assert!(sm.has_session(7));
        assert_eq!(sm.session_owner(7), Some(Some("token:app")));
        assert_eq!(sm.cached(7, 2).map(|c| c.is_some()), Some(true));
        let done = sm.apply(&owned(7, 3, 3, Operation::CloseSession, "token:app"));
        assert!(matches!(&done[..], [c] if c.result == ReplyResult::Ok(Value::Nil)));
        assert!(!sm.has_session(7));
    }

    fn incr() -> Operation {
        Operation::Call {
            object: "c".into(),
            method: "increment".into(),
            args: vec![],
        }
    }

    fn value(sm: &mut StateMachine, seq: u64) -> ReplyResult {
        let get = Operation::Call {
            object: "c".into(),
            method: "getvalue".into(),
            args: vec![],
        };
        sm.apply(&cmd(9, seq, 0, get)).remove(0).result
    }

    fn machine() -> StateMachine {
        let mut sm = StateMachine::default();
        sm.apply(&Command::EnsureObject {
            name: "c".into(),
            type_name: "counter".into(),
            args: vec![],
        });
        sm.apply(&cmd(7, 0, 0, Operation::OpenSession));
        sm.apply(&cmd(9, 0, 0, Operation::OpenSession));
        sm
    }

    #[test]
    fn a_retried_command_is_answered_not_applied_again() {
        let mut sm = machine();
        let first = sm.apply(&cmd(7, 1, 1, incr()));
        let again = sm.apply(&cmd(7, 1, 1, incr()));
        assert_eq!(first, again);
        assert_eq!(value(&mut sm, 1), ReplyResult::Ok(Value::from(1)));
        // Once acknowledged, a stale duplicate is ignored silently.
        sm.apply(&cmd(7, 2, 2, incr()));
        assert!(sm.apply(&cmd(7, 1, 3, incr())).is_empty());
        assert_eq!(value(&mut sm, 2), ReplyResult::Ok(Value::from(2)));
    }

    #[test]
    fn unknown_and_expired_sessions_are_told_so() {
        let mut sm = machine();
        let r = sm.apply(&cmd(42, 1, 0, incr()));
        assert_eq!(r[0].result, ReplyResult::SessionExpired);
        sm.apply(&Command::ExpireSession(7));
        assert_eq!(
            sm.apply(&cmd(7, 1, 1, incr()))[0].result,
            ReplyResult::SessionExpired
        );
        assert_eq!(value(&mut sm, 1), ReplyResult::Ok(Value::from(0)));
    }

    #[test]
    fn an_evicted_reply_is_never_re_executed() {
        let mut sm = machine();
        // A client that never acknowledges: the cache keeps the newest replies only.
        let n = MAX_CACHED_REPLIES as u64 + 10;
        for seq in 1..=n {
            sm.apply(&cmd(7, seq, 1, incr()));
        }
        let retry = sm.apply(&cmd(7, 1, 1, incr()));
        assert!(
            matches!(&retry[0].result, ReplyResult::Err { kind, .. } if kind == "RuntimeError"),
            "{retry:?}"
        );
        assert_eq!(value(&mut sm, 1), ReplyResult::Ok(Value::from(n as i64)));
    }

    #[test]
    fn save_and_restore_keep_sessions_and_replies() {
        let mut sm = machine();
        sm.apply(&cmd(7, 1, 1, incr()));
        let bytes = sm.save().unwrap();
        let mut back = StateMachine::restore(ObjectTypes::builtin(), &bytes).unwrap();
        assert_eq!(back.save().unwrap(), bytes);
        assert_eq!(
            sm.apply(&cmd(7, 1, 1, incr())),
            back.apply(&cmd(7, 1, 1, incr()))
        );
        assert_eq!(value(&mut back, 1), ReplyResult::Ok(Value::from(1)));
    }

    const TEN: &str = "class TenCounter:\n    def __init__(self, value=0):\n        self.value = value\n    def increment(self):\n        self.value += 10\n    def getvalue(self):\n        return self.value\n    def __str__(self):\n        return 'The counter value is %d' % self.value\n";

    fn define(source: &str, replace: bool) -> Operation {
        Operation::DefineType {
            module: "tencounter".into(),
            class: "TenCounter".into(),
            source: source.into(),
            replace,
        }
    }

    fn on(object: &str, method: &str) -> Operation {
        Operation::Call {
            object: object.into(),
            method: method.into(),
            args: vec![],
        }
    }

    fn result(sm: &mut StateMachine, seq: u64, op: Operation) -> ReplyResult {
        sm.apply(&cmd(9, seq, 0, op)).remove(0).result
    }

    /// A machine with the TenCounter type (session 9, seq 1) and an object of it for each
    /// name (seqs 2, 3, ...).
    fn with_ten_counters(names: &[&str]) -> StateMachine {
        let mut sm = machine();
        result(&mut sm, 1, define(TEN, false));
        for (seq, name) in (2..).zip(names) {
            let create = Operation::Create {
                name: (*name).into(),
                type_name: "tencounter.TenCounter".into(),
                args: vec![],
            };
            result(&mut sm, seq, create);
        }
        sm
    }

    #[test]
    fn user_types_apply_alike_and_travel_in_snapshots() {
        let ops = [
            define(TEN, false),
            Operation::Create {
                name: "t".into(),
                type_name: "tencounter.TenCounter".into(),
                args: vec![Value::from(5)],
            },
            on("t", "increment"),
            on("t", "increment"),
            on("t", "__str__"),
        ];
        let mut machines: Vec<StateMachine> = (0..3).map(|_| machine()).collect();
        let mut outcomes = Vec::new();
        for sm in &mut machines {
            let results: Vec<ReplyResult> = ops
                .iter()
                .enumerate()
                .map(|(i, op)| result(sm, i as u64 + 1, op.clone()))
                .collect();
            outcomes.push(results);
        }
        assert!(outcomes.iter().all(|o| o == &outcomes[0]));
        assert_eq!(
            outcomes[0][4],
            ReplyResult::Ok(Value::from("The counter value is 25"))
        );
        // A snapshot restored onto the compiled-in types brings the type and the object.
        let bytes = machines[0].save().unwrap();
        let mut back = StateMachine::restore(ObjectTypes::builtin(), &bytes).unwrap();
        assert_eq!(
            result(&mut back, 10, on("t", "getvalue")),
            ReplyResult::Ok(Value::from(25))
        );
        let ReplyResult::Ok(Value::Array(types)) = result(&mut back, 11, Operation::ListTypes)
        else {
            panic!("no type list");
        };
        assert_eq!(types.len(), 1);
    }

    #[test]
    fn a_refused_definition_or_replace_changes_nothing() {
        let mut sm = machine();
        assert!(matches!(
            result(&mut sm, 1, define(TEN, false)),
            ReplyResult::Ok(_)
        ));
        let create = Operation::Create {
            name: "t".into(),
            type_name: "TenCounter".into(),
            args: vec![],
        };
        assert!(matches!(result(&mut sm, 2, create), ReplyResult::Ok(_)));
        result(&mut sm, 3, on("t", "increment"));
        let broken = "class TenCounter(:\n";
        let ReplyResult::Err { kind, .. } = result(&mut sm, 4, define(broken, true)) else {
            panic!("broken code accepted");
        };
        assert_eq!(kind, "SyntaxError");
        // Other code without replace is refused; the same code again is accepted.
        let other = TEN.replace("+= 10", "+= 100");
        assert!(matches!(
            result(&mut sm, 5, define(&other, false)),
            ReplyResult::Err { .. }
        ));
        assert!(matches!(
            result(&mut sm, 6, define(TEN, false)),
            ReplyResult::Ok(_)
        ));
        result(&mut sm, 7, on("t", "increment"));
        assert_eq!(
            result(&mut sm, 8, on("t", "getvalue")),
            ReplyResult::Ok(Value::from(20))
        );
        // A built-in's name cannot be taken.
        let clash = Operation::DefineType {
            module: "mine".into(),
            class: "Counter".into(),
            source: "class Counter:\n    def f(self):\n        pass\n".into(),
            replace: true,
        };
        let ReplyResult::Err { message, .. } = result(&mut sm, 9, clash) else {
            panic!("a built-in name was taken");
        };
        assert!(
            message.contains("conflicts with the built-in type"),
            "{message}"
        );
        // Replace keeps the state and swaps the code.
        assert!(matches!(
            result(&mut sm, 10, define(&other, true)),
            ReplyResult::Ok(_)
        ));
        result(&mut sm, 11, on("t", "increment"));
        assert_eq!(
            result(&mut sm, 12, on("t", "getvalue")),
            ReplyResult::Ok(Value::from(120))
        );
    }

    #[test]
    fn snapshots_from_before_user_types_still_restore() {
        let sm = machine();
        // The format before user types: a (sessions, objects) pair.
        let old = rmp_serde::to_vec(&(&sm.sessions, sm.objects.save().unwrap())).unwrap();
        let mut back = StateMachine::restore(ObjectTypes::builtin(), &old).unwrap();
        back.apply(&cmd(7, 1, 0, incr()));
        assert_eq!(value(&mut back, 1), ReplyResult::Ok(Value::from(1)));
    }

    /// A slot's user-object calls run together (one interpreter round trip) give the very
    /// replies and state that applying the commands one by one gives; only the order of the
    /// replies within the slot may differ.
    #[test]
    fn batched_user_calls_answer_as_one_by_one() {
        let mut batch = vec![
            cmd(7, 1, 0, on("a", "increment")),
            cmd(7, 2, 0, on("b", "increment")),
            cmd(7, 1, 0, on("a", "increment")), // a retry within the slot: not run twice
            cmd(9, 10, 0, incr()),              // a built-in call in between
            cmd(7, 3, 0, on("a", "increment")),
            cmd(7, 4, 0, on("a", "nope")), // AttributeError, state kept
            cmd(7, 5, 0, on("a", "getvalue")),
            cmd(7, 6, 0, on("a", "__str__")), // a special method: runs in order
            cmd(7, 7, 0, on("b", "getvalue")),
        ];
        batch.push(cmd(7, 8, 0, on("a", "getvalue")));
        let mut together = with_ten_counters(&["a", "b"]);
        let mut got = together.apply_batch(&batch);
        let mut alone = with_ten_counters(&["a", "b"]);
        let mut want: Vec<Completion> = batch.iter().flat_map(|c| alone.apply(c)).collect();
        let key = |c: &Completion| (c.session, c.seq);
        // A retry within the slot runs what its session put off, then is answered from the
        // cache with the reply of the call it repeats, as one by one.
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got, want);
        assert_eq!(together.save().unwrap(), alone.save().unwrap());
        let of = |seq: u64| {
            got.iter()
                .find(|c| c.session == 7 && c.seq == seq)
                .map(|c| c.result.clone())
        };
        assert_eq!(of(5), Some(ReplyResult::Ok(Value::from(20))));
        assert_eq!(
            of(6),
            Some(ReplyResult::Ok(Value::from("The counter value is 20")))
        );
        assert_eq!(of(7), Some(ReplyResult::Ok(Value::from(10))));
        assert!(matches!(of(4), Some(ReplyResult::Err { kind, .. }) if kind == "AttributeError"));
    }

    /// Put-off calls wait across slots until the driver runs them, or until a command that
    /// could observe them arrives (the next command of the same session, a special method);
    /// a retry is not run twice, and no snapshot is taken while calls wait.
    #[test]
    fn put_off_calls_wait_across_slots_and_run_once() {
        let mut sm = with_ten_counters(&["a"]);
        let seqs =
            |done: &[Completion]| done.iter().map(|c| (c.session, c.seq)).collect::<Vec<_>>();
        assert!(
            sm.apply_slot(&[cmd(7, 1, 0, on("a", "increment"))])
                .is_empty()
        );
        assert!(
            sm.apply_slot(&[cmd(9, 3, 0, on("a", "increment"))])
                .is_empty()
        );
        assert!(sm.has_put_off());
        assert_eq!(
            sm.cached(7, 1),
            Some(None),
            "a waiting call shows as in progress"
        );
        assert!(
            sm.save().is_err(),
            "a snapshot would lose the waiting calls"
        );
        // Session 7 retries its call: what waits runs first, then the retry is answered
        // from the cache.
        let done = sm.apply_slot(&[cmd(7, 1, 0, on("a", "increment"))]);
        assert_eq!(seqs(&done), [(7, 1), (9, 3), (7, 1)]);
        assert_eq!(done[0], done[2]);
        assert!(!sm.has_put_off());
        assert!(sm.save().is_ok());
        // The driver runs what waits at the end of its burst.
        assert!(
            sm.apply_slot(&[cmd(7, 2, 0, on("a", "increment"))])
                .is_empty()
        );
        assert_eq!(seqs(&sm.run_put_off()), [(7, 2)]);
        // A special method could observe the object: what waits runs first.
        assert!(
            sm.apply_slot(&[cmd(7, 3, 0, on("a", "increment"))])
                .is_empty()
        );
        let done = sm.apply_slot(&[cmd(9, 4, 0, on("a", "__str__"))]);
        assert_eq!(
            done.iter()
                .map(|c| (c.seq, c.result.clone()))
                .collect::<Vec<_>>(),
            [
                (3, ReplyResult::Ok(Value::Nil)),
                (4, ReplyResult::Ok(Value::from("The counter value is 40")))
            ]
        );
    }

    /// A follower that catches up applies many slots in one go: a call whose reply the
    /// client acknowledged in a later slot leaves the reply cache exactly as applying the
    /// slots one by one does (the simulator caught the difference once, seed 154).
    #[test]
    fn acknowledged_put_off_calls_leave_the_cache_as_one_by_one() {
        let slots = [
            vec![cmd(7, 1, 1, on("a", "increment"))],
            vec![cmd(7, 2, 2, on("a", "getvalue"))],
            vec![
                cmd(9, 3, 3, on("a", "increment")),
                cmd(7, 3, 3, on("a", "increment")),
            ],
        ];
        let mut together = with_ten_counters(&["a"]);
        let mut got = Vec::new();
        for slot in &slots {
            got.extend(together.apply_slot(slot));
        }
        got.extend(together.run_put_off());
        let mut alone = with_ten_counters(&["a"]);
        let mut want: Vec<Completion> = slots.iter().flat_map(|s| alone.apply_batch(s)).collect();
        let key = |c: &Completion| (c.session, c.seq);
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got, want);
        assert_eq!(together.save().unwrap(), alone.save().unwrap());
    }
}
