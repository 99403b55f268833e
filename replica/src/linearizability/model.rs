//! Sequential specifications of the objects the checker knows, as they behave in
//! replica/src/object: given a state and a call, the next state and the outcome, or nothing
//! when the call cannot take effect in that state (a blocking call that would wait, or a
//! call of a session that has ended).

use super::{
    Call, CounterCall, DictCall, LockCall, ObjectSpec, Outcome, QueueCall, SemaphoreCall, Val,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// The model a partition is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Moves by `step` per increment.
    Counter {
        step: i64,
    },
    /// One key of a Dict (keys are independent, so each is its own partition).
    DictKey,
    Queue {
        maxsize: u64,
    },
    Lock,
    Semaphore,
}

/// An object's state; hashed for memoization, so it holds only what decides outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum State {
    Counter(i64),
    Key(Option<Val>),
    Queue(VecDeque<Val>),
    Lock {
        holder: Option<u64>,
        /// Sessions that ended: they hold nothing and call nothing any more.
        ended: BTreeSet<u64>,
    },
    Semaphore {
        value: u64,
        /// Permits each session holds (returned when it ends).
        held: BTreeMap<u64, u64>,
        ended: BTreeSet<u64>,
    },
}

pub(crate) fn dict_key(c: &DictCall) -> &str {
    match c {
        DictCall::Get { key }
        | DictCall::Set { key, .. }
        | DictCall::Delete { key }
        | DictCall::Cas { key, .. } => key,
    }
}

impl Kind {
    /// The model of the object a call is made on; None for a session end, which concerns
    /// every object with owners.
    pub(crate) fn of(call: &Call) -> Option<Kind> {
        Some(match call {
            Call::Counter(_) => Kind::Counter { step: 1 },
            Call::Dict(_) => Kind::DictKey,
            Call::Queue(_) => Kind::Queue { maxsize: 0 },
            Call::Lock(_) => Kind::Lock,
            Call::Semaphore(_) => Kind::Semaphore,
            Call::EndSession => return None,
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Counter { .. } => "Counter",
            Kind::DictKey => "Dict",
            Kind::Queue { .. } => "Queue",
            Kind::Lock => "Lock",
            Kind::Semaphore => "Semaphore",
        }
    }

    /// Whether sessions own something here (so session ends matter).
    pub(crate) fn has_owners(&self) -> bool {
        matches!(self, Kind::Lock | Kind::Semaphore)
    }

    /// The model and initial state of an object used as `kind`, started as `spec` says.
    pub(crate) fn start(kind: Kind, spec: Option<&ObjectSpec>) -> Result<(Kind, State), String> {
        let mismatch = |spec: &ObjectSpec| {
            Err(format!(
                "declared as {spec:?} but called as a {}",
                kind.name()
            ))
        };
        Ok(match (&kind, spec) {
            (Kind::Counter { .. }, None) => (kind, State::Counter(0)),
            (Kind::Counter { .. }, Some(ObjectSpec::Counter { value, step })) => {
                (Kind::Counter { step: *step }, State::Counter(*value))
            }
            (Kind::DictKey, None | Some(ObjectSpec::Dict)) => (kind, State::Key(None)),
            (Kind::Queue { .. }, None) => {
                (Kind::Queue { maxsize: 0 }, State::Queue(VecDeque::new()))
            }
            (Kind::Queue { .. }, Some(ObjectSpec::Queue { maxsize })) => (
                Kind::Queue { maxsize: *maxsize },
                State::Queue(VecDeque::new()),
            ),
            (Kind::Lock, None | Some(ObjectSpec::Lock)) => (
                kind,
                State::Lock {
                    holder: None,
                    ended: BTreeSet::new(),
                },
            ),
            (Kind::Semaphore, None) => (kind, semaphore(1)),
            (Kind::Semaphore, Some(ObjectSpec::Semaphore { count })) => (kind, semaphore(*count)),
            (_, Some(spec)) => return mismatch(spec),
        })
    }

    /// Runs `call` by `client` in `state`: the next state and what the call returns, or
    /// None when it cannot take effect now.
    pub(crate) fn apply(
        &self,
        state: &State,
        client: u64,
        call: &Call,
    ) -> Option<(State, Outcome)> {
        let ok = |v: Val| Outcome::Ok(v);
        match (state, call) {
            (State::Counter(v), Call::Counter(c)) => {
                let unit = match self {
                    Kind::Counter { step } => *step,
                    _ => 1,
                };
                let step = |d: i64| match v.checked_add(d * unit) {
                    Some(n) => (State::Counter(n), ok(Val::Nil)),
                    None => (State::Counter(*v), Outcome::err("OverflowError")),
                };
                Some(match c {
                    CounterCall::Increment => step(1),
                    CounterCall::Decrement => step(-1),
                    CounterCall::GetValue => (state.clone(), ok(Val::Int(*v))),
                })
            }
            (State::Key(cur), Call::Dict(c)) => Some(match c {
                DictCall::Get { .. } => (state.clone(), ok(cur.clone().unwrap_or(Val::Nil))),
                DictCall::Set { value, .. } => (State::Key(Some(value.clone())), ok(Val::Nil)),
                DictCall::Delete { .. } => match cur {
                    Some(_) => (State::Key(None), ok(Val::Nil)),
                    None => (State::Key(None), Outcome::err("KeyError")),
                },
                DictCall::Cas { expected, new, .. } => {
                    // As the Dict object: None expects absence; a stored None never matches.
                    let matches = match cur {
                        None => *expected == Val::Nil,
                        Some(c) => *expected != Val::Nil && c == expected,
                    };
                    let next = if matches {
                        State::Key(Some(new.clone()))
                    } else {
                        state.clone()
                    };
                    (next, ok(Val::Bool(matches)))
                }
            }),
            (State::Queue(items), Call::Queue(c)) => {
                let Kind::Queue { maxsize } = self else {
                    return None;
                };
                match c {
                    QueueCall::Put { item, block } => {
                        if *maxsize > 0 && items.len() as u64 >= *maxsize {
                            if *block {
                                return None;
                            }
                            return Some((state.clone(), Outcome::err("Full")));
                        }
                        let mut next = items.clone();
                        next.push_back(item.clone());
                        Some((State::Queue(next), ok(Val::Nil)))
                    }
                    QueueCall::Get { block } => {
                        let mut next = items.clone();
                        match next.pop_front() {
                            Some(item) => Some((State::Queue(next), ok(item))),
                            None if *block => None,
                            None => Some((state.clone(), Outcome::err("Empty"))),
                        }
                    }
                }
            }
            (State::Lock { holder, ended }, call) => {
                if ended.contains(&client) {
                    return None;
                }
                let lock = |holder: Option<u64>, ended: &BTreeSet<u64>| State::Lock {
                    holder,
                    ended: ended.clone(),
                };
                match call {
                    // A blocking acquire returns None (ConCoord 1.1's Lock) once granted;
                    // a non-blocking one says whether it got the lock.
                    Call::Lock(LockCall::Acquire { blocking }) => match holder {
                        None if *blocking => Some((lock(Some(client), ended), ok(Val::Nil))),
                        None => Some((lock(Some(client), ended), ok(Val::Bool(true)))),
                        Some(_) if *blocking => None,
                        Some(_) => Some((state.clone(), ok(Val::Bool(false)))),
                    },
                    Call::Lock(LockCall::Release) => {
                        if *holder == Some(client) {
                            Some((lock(None, ended), ok(Val::Nil)))
                        } else {
                            Some((state.clone(), Outcome::err("RuntimeError")))
                        }
                    }
                    Call::Lock(LockCall::Locked) => {
                        Some((state.clone(), ok(Val::Bool(holder.is_some()))))
                    }
                    Call::EndSession => {
                        let mut ended = ended.clone();
                        ended.insert(client);
                        let holder = holder.filter(|h| *h != client);
                        Some((State::Lock { holder, ended }, ok(Val::Nil)))
                    }
                    _ => None,
                }
            }
            (State::Semaphore { value, held, ended }, call) => {
                if ended.contains(&client) {
                    return None;
                }
                match call {
                    Call::Semaphore(SemaphoreCall::Acquire { blocking }) => {
                        if *value > 0 {
                            let mut held = held.clone();
                            *held.entry(client).or_default() += 1;
                            let next = State::Semaphore {
                                value: value - 1,
                                held,
                                ended: ended.clone(),
                            };
                            Some((next, ok(Val::Bool(true))))
                        } else if *blocking {
                            None
                        } else {
                            Some((state.clone(), ok(Val::Bool(false))))
                        }
                    }
                    Call::Semaphore(SemaphoreCall::Release { n }) => {
                        if *n == 0 {
                            return Some((state.clone(), Outcome::err("ValueError")));
                        }
                        let Some(value) = value.checked_add(*n) else {
                            return Some((state.clone(), Outcome::err("OverflowError")));
                        };
                        let mut held = held.clone();
                        if let Some(h) = held.get_mut(&client) {
                            *h = h.saturating_sub(*n);
                            if *h == 0 {
                                held.remove(&client);
                            }
                        }
                        let next = State::Semaphore {
                            value,
                            held,
                            ended: ended.clone(),
                        };
                        Some((next, ok(Val::Nil)))
                    }
                    Call::EndSession => {
                        let mut held = held.clone();
                        let back = held.remove(&client).unwrap_or(0);
                        let mut ended = ended.clone();
                        ended.insert(client);
                        let next = State::Semaphore {
                            value: value.saturating_add(back),
                            held,
                            ended,
                        };
                        Some((next, ok(Val::Nil)))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn semaphore(count: u64) -> State {
    State::Semaphore {
        value: count,
        held: BTreeMap::new(),
        ended: BTreeSet::new(),
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Counter(v) => write!(f, "value {v}"),
            State::Key(None) => write!(f, "absent"),
            State::Key(Some(v)) => write!(f, "{v}"),
            State::Queue(items) => {
                let items: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
            State::Lock { holder, .. } => match holder {
                Some(h) => write!(f, "held by session {h}"),
                None => write!(f, "free"),
            },
            State::Semaphore { value, held, .. } => {
                let held: Vec<String> = held.iter().map(|(s, n)| format!("{s}: {n}")).collect();
                write!(f, "{value} permits free, held {{{}}}", held.join(", "))
            }
        }
    }
}
