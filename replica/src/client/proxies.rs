//! Typed proxies for the built-in object types, like ConCoord's `concoord.proxy.*`:
//! `Counter::new(&client, "counter").increment().await?` or `client.counter("counter")`.
//!
//! Each proxy is a named [`ObjectRef`] plus one line per method that converts the result.
//! Arguments that ConCoord accepts of any type (items, keys, members) take `impl Into<Value>`.

use super::{Client, ClientError, convert};
use crate::command::Value;

/// A named object of the group, untyped: the base of every proxy.
#[derive(Clone, Debug)]
pub struct ObjectRef {
    client: Client,
    name: String,
}

impl ObjectRef {
    pub fn new(client: &Client, name: impl Into<String>) -> ObjectRef {
        ObjectRef {
            client: client.clone(),
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, ClientError> {
        self.client.call(&self.name, method, args).await
    }

    /// `__concoordinit__(args)`: re-runs the constructor (a reset).
    pub async fn reinit(&self, args: Vec<Value>) -> Result<(), ClientError> {
        self.client.reinit(&self.name, args).await
    }

    /// `__str__`, e.g. `<DSemaphore object>`.
    pub async fn describe(&self) -> Result<String, ClientError> {
        self.client.describe(&self.name).await
    }

    /// `__repr__`, e.g. `<DSemaphore count=0>`.
    pub async fn repr(&self) -> Result<String, ClientError> {
        convert::string(self.call("__repr__", vec![]).await?)
    }

    async fn unit(&self, method: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.call(method, args).await.map(drop)
    }

    async fn int(&self, method: &str, args: Vec<Value>) -> Result<i64, ClientError> {
        convert::int(self.call(method, args).await?)
    }

    async fn truth(&self, method: &str, args: Vec<Value>) -> Result<bool, ClientError> {
        Ok(convert::truthy(&self.call(method, args).await?))
    }

    async fn list(&self, method: &str, args: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        convert::list(self.call(method, args).await?)
    }
}

/// Declares a proxy type over [`ObjectRef`], its constructor on [`Client`], `reinit` and
/// `describe`; the type's own methods follow in a plain `impl`.
macro_rules! proxy {
    ($(#[$doc:meta])* $ty:ident, $ctor:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $ty(ObjectRef);

        impl $ty {
            pub fn new(client: &Client, name: impl Into<String>) -> $ty {
                $ty(ObjectRef::new(client, name))
            }

            pub fn object(&self) -> &ObjectRef {
                &self.0
            }

            /// `__concoordinit__(args)`: re-runs the constructor (a reset).
            pub async fn reinit(&self, args: Vec<Value>) -> Result<(), ClientError> {
                self.0.reinit(args).await
            }

            /// The object's `__str__`.
            pub async fn describe(&self) -> Result<String, ClientError> {
                self.0.describe().await
            }

            /// The object's `__repr__`.
            pub async fn repr(&self) -> Result<String, ClientError> {
                self.0.repr().await
            }
        }

        impl Client {
            #[doc = concat!("A [`", stringify!($ty), "`] proxy for the object `name`.")]
            pub fn $ctor(&self, name: impl Into<String>) -> $ty {
                $ty::new(self, name)
            }
        }
    };
}

proxy!(
    /// `Counter(value=0)`.
    Counter,
    counter
);
impl Counter {
    pub async fn increment(&self) -> Result<(), ClientError> {
        self.0.unit("increment", vec![]).await
    }
    pub async fn decrement(&self) -> Result<(), ClientError> {
        self.0.unit("decrement", vec![]).await
    }
    pub async fn getvalue(&self) -> Result<i64, ClientError> {
        self.0.int("getvalue", vec![]).await
    }
}

proxy!(
    /// `Bank()`: accounts with balances (floats once money moved, as in ConCoord).
    Bank,
    bank
);
impl Bank {
    /// False when the account already exists.
    pub async fn open(&self, account: impl Into<Value>) -> Result<bool, ClientError> {
        self.0.truth("open", vec![account.into()]).await
    }
    /// KeyError when there is no such account.
    pub async fn close(&self, account: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("close", vec![account.into()]).await
    }
    /// The new balance, or None (the object answers False) when the balance is too low.
    pub async fn debit(
        &self,
        account: impl Into<Value>,
        amount: f64,
    ) -> Result<Option<f64>, ClientError> {
        match self
            .0
            .call("debit", vec![account.into(), amount.into()])
            .await?
        {
            Value::Boolean(false) => Ok(None),
            other => convert::number(other).map(Some),
        }
    }
    /// The new balance.
    pub async fn deposit(
        &self,
        account: impl Into<Value>,
        amount: f64,
    ) -> Result<f64, ClientError> {
        convert::number(
            self.0
                .call("deposit", vec![account.into(), amount.into()])
                .await?,
        )
    }
    pub async fn balance(&self, account: impl Into<Value>) -> Result<f64, ClientError> {
        convert::number(self.0.call("balance", vec![account.into()]).await?)
    }
}

proxy!(
    /// `Log()`: a list of entries.
    Log,
    log
);
impl Log {
    /// Replaces the log with this one entry.
    pub async fn write(&self, entry: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("write", vec![entry.into()]).await
    }
    pub async fn append(&self, entry: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("append", vec![entry.into()]).await
    }
    /// The entries as one string, each as Python's `str()` prints it, space-separated.
    pub async fn read(&self) -> Result<String, ClientError> {
        convert::string(self.0.call("read", vec![]).await?)
    }
}

proxy!(
    /// `Membership()`: a set of members.
    Membership,
    membership
);
impl Membership {
    pub async fn add(&self, member: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("add", vec![member.into()]).await
    }
    /// KeyError when `member` is not a member.
    pub async fn remove(&self, member: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("remove", vec![member.into()]).await
    }
    pub async fn members(&self) -> Result<Vec<Value>, ClientError> {
        self.0.list("members", vec![]).await
    }
}

proxy!(
    /// `MeshMembership()`: named groups of nodes with epochs. Groups and nodes are named
    /// by any hashable value; epochs count membership changes.
    MeshMembership,
    mesh_membership
);
impl MeshMembership {
    /// Creates the group (an existing one is left as it is).
    pub async fn add_group(
        &self,
        group: impl Into<Value>,
        minsize: i64,
    ) -> Result<(), ClientError> {
        self.0
            .unit("add_group", vec![group.into(), minsize.into()])
            .await
    }
    pub async fn remove_group(&self, group: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("remove_group", vec![group.into()]).await
    }
    /// Admits `node` if `epoch` is still the group's epoch: (joined, current epoch).
    pub async fn approve_join(
        &self,
        group: impl Into<Value>,
        node: impl Into<Value>,
        epoch: i64,
    ) -> Result<(bool, i64), ClientError> {
        let args = vec![group.into(), node.into(), epoch.into()];
        convert::flag_and_int(self.0.call("approve_join", args).await?)
    }
    /// (is a member, current epoch).
    pub async fn check_member(
        &self,
        group: impl Into<Value>,
        node: impl Into<Value>,
    ) -> Result<(bool, i64), ClientError> {
        let args = vec![group.into(), node.into()];
        convert::flag_and_int(self.0.call("check_member", args).await?)
    }
    pub async fn get_group_members(
        &self,
        group: impl Into<Value>,
    ) -> Result<Vec<Value>, ClientError> {
        self.0.list("get_group_members", vec![group.into()]).await
    }
    pub async fn get_group_epoch(&self, group: impl Into<Value>) -> Result<i64, ClientError> {
        self.0.int("get_group_epoch", vec![group.into()]).await
    }
    /// (members, epoch).
    pub async fn get_group_state(
        &self,
        group: impl Into<Value>,
    ) -> Result<(Vec<Value>, i64), ClientError> {
        convert::list_and_int(self.0.call("get_group_state", vec![group.into()]).await?)
    }
    /// Reports `failed` as down, as seen at `epoch`. None when the strike was counted and
    /// the node stays; otherwise (the epoch was stale, or the node was removed) each member
    /// with its strikes, and the current epoch.
    pub async fn notify_failure(
        &self,
        group: impl Into<Value>,
        epoch: i64,
        failed: impl Into<Value>,
    ) -> Result<Option<(Vec<(Value, i64)>, i64)>, ClientError> {
        let args = vec![group.into(), epoch.into(), failed.into()];
        match self.0.call("notify_failure", args).await? {
            Value::Nil => Ok(None),
            other => convert::strikes_and_epoch(other).map(Some),
        }
    }
    /// Waits until the group's epoch differs from `seen` (or until its next change when
    /// `seen` is None); returns the new epoch.
    pub async fn wait(
        &self,
        group: impl Into<Value>,
        seen: Option<i64>,
    ) -> Result<i64, ClientError> {
        let mut args = vec![group.into()];
        args.extend(seen.map(Value::from));
        self.0.int("wait", args).await
    }
}

proxy!(
    /// `JobManager()`: a set of scheduled jobs.
    JobManager,
    job_manager
);
impl JobManager {
    pub async fn schedule(&self, job: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("schedule", vec![job.into()]).await
    }
    pub async fn deschedule(&self, job: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("deschedule", vec![job.into()]).await
    }
    pub async fn list_jobs(&self) -> Result<Vec<Value>, ClientError> {
        self.0.list("list_jobs", vec![]).await
    }
}

proxy!(
    /// `Queue(maxsize=0)`: FIFO. As in ConCoord, `put` on a full queue is `Full` and `get` on
    /// an empty one `Empty`; `put_wait` and `get_wait` wait instead.
    Queue,
    queue
);
impl Queue {
    pub async fn put(&self, item: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("put", vec![item.into()]).await
    }
    pub async fn get(&self) -> Result<Value, ClientError> {
        self.0.call("get", vec![]).await
    }
    /// `put(item, True)`: waits while the queue is full.
    pub async fn put_wait(&self, item: impl Into<Value>) -> Result<(), ClientError> {
        self.0
            .unit("put", vec![item.into(), Value::Boolean(true)])
            .await
    }
    /// `get(True)`: waits for an item.
    pub async fn get_wait(&self) -> Result<Value, ClientError> {
        self.0.call("get", vec![Value::Boolean(true)]).await
    }
    pub async fn qsize(&self) -> Result<i64, ClientError> {
        self.0.int("qsize", vec![]).await
    }
    pub async fn empty(&self) -> Result<bool, ClientError> {
        self.0.truth("empty", vec![]).await
    }
    pub async fn full(&self) -> Result<bool, ClientError> {
        self.0.truth("full", vec![]).await
    }
}

proxy!(
    /// `Stack()`: LIFO.
    Stack,
    stack
);
impl Stack {
    pub async fn append(&self, item: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("append", vec![item.into()]).await
    }
    /// The top item; IndexError when empty.
    pub async fn pop(&self) -> Result<Value, ClientError> {
        self.0.call("pop", vec![]).await
    }
    pub async fn get_size(&self) -> Result<i64, ClientError> {
        self.0.int("get_size", vec![]).await
    }
    pub async fn get_stack(&self) -> Result<Vec<Value>, ClientError> {
        self.0.list("get_stack", vec![]).await
    }
}

proxy!(
    /// `Dict()`: a replicated map with compare-and-set.
    Dict,
    dict
);
impl Dict {
    /// The value, or None when the key is absent (a key holding nil also reads as None;
    /// [`Dict::contains`] tells them apart).
    pub async fn get(&self, key: &str) -> Result<Option<Value>, ClientError> {
        // Dict.get never blocks, so it keeps the normal call deadline.
        let client = &self.0.client;
        let limit = client.options().call_timeout;
        let v = client
            .call_with_timeout(&self.0.name, "get", vec![key.into()], limit)
            .await?;
        Ok((!v.is_nil()).then_some(v))
    }
    pub async fn set(&self, key: &str, value: impl Into<Value>) -> Result<(), ClientError> {
        self.0.unit("set", vec![key.into(), value.into()]).await
    }
    /// KeyError when the key is absent.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        self.0.unit("delete", vec![key.into()]).await
    }
    pub async fn contains(&self, key: &str) -> Result<bool, ClientError> {
        self.0.truth("contains", vec![key.into()]).await
    }
    pub async fn keys(&self) -> Result<Vec<String>, ClientError> {
        convert::list(self.0.call("keys", vec![]).await?)?
            .into_iter()
            .map(convert::string)
            .collect()
    }
    /// Sets `key` to `new` if it currently holds `expected` (nil: absent); true when it did.
    pub async fn cas(
        &self,
        key: &str,
        expected: impl Into<Value>,
        new: impl Into<Value>,
    ) -> Result<bool, ClientError> {
        let args = vec![key.into(), expected.into(), new.into()];
        self.0.truth("cas", args).await
    }
}

/// acquire / try_acquire / release, shared by the lock-like types.
macro_rules! acquire_release {
    ($ty:ident) => {
        impl $ty {
            /// Waits until acquired (no deadline by default); true when acquired. (The
            /// objects answer as ConCoord's do: Lock and Condition say None, RLock 1 when
            /// re-entered; only a refused `acquire(False)` says False.)
            pub async fn acquire(&self) -> Result<bool, ClientError> {
                Ok(convert::acquired(&self.0.call("acquire", vec![]).await?))
            }
            /// `acquire(False)`: true when acquired, false when it would have to wait.
            pub async fn try_acquire(&self) -> Result<bool, ClientError> {
                let answer = self.0.call("acquire", vec![Value::Boolean(false)]).await?;
                Ok(convert::acquired(&answer))
            }
            pub async fn release(&self) -> Result<(), ClientError> {
                self.0.unit("release", vec![]).await
            }
        }
    };
}

proxy!(
    /// `Lock()`: non-reentrant, owned by the session.
    Lock,
    lock
);
acquire_release!(Lock);
impl Lock {
    pub async fn locked(&self) -> Result<bool, ClientError> {
        self.0.truth("locked", vec![]).await
    }
}

proxy!(
    /// `RLock()`: reentrant, owned by the session.
    RLock,
    rlock
);
// Like Python's RLock, it has no locked().
acquire_release!(RLock);

proxy!(
    /// `Semaphore(count=1)`.
    Semaphore,
    semaphore
);
acquire_release!(Semaphore);

proxy!(
    /// `BoundedSemaphore(count=1)`: releasing above the initial count is a ValueError.
    BoundedSemaphore,
    bounded_semaphore
);
acquire_release!(BoundedSemaphore);

proxy!(
    /// `Condition()`: a lock with wait/notify.
    Condition,
    condition
);
acquire_release!(Condition);
impl Condition {
    /// Releases the lock, waits for a notify, re-acquires it.
    pub async fn wait(&self) -> Result<(), ClientError> {
        self.0.unit("wait", vec![]).await
    }
    pub async fn notify(&self) -> Result<(), ClientError> {
        self.0.unit("notify", vec![]).await
    }
    pub async fn notify_all(&self) -> Result<(), ClientError> {
        self.0.unit("notify_all", vec![]).await
    }
}

proxy!(
    /// `Barrier(count=1)`: reusable across rounds.
    Barrier,
    barrier
);
impl Barrier {
    /// Waits until the round is full (returns None, as ConCoord's Barrier.wait does).
    pub async fn wait(&self) -> Result<(), ClientError> {
        self.0.unit("wait", vec![]).await
    }
    pub async fn parties(&self) -> Result<i64, ClientError> {
        self.0.int("parties", vec![]).await
    }
    pub async fn n_waiting(&self) -> Result<i64, ClientError> {
        self.0.int("n_waiting", vec![]).await
    }
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.0.unit("reset", vec![]).await
    }
    pub async fn abort(&self) -> Result<(), ClientError> {
        self.0.unit("abort", vec![]).await
    }
    pub async fn broken(&self) -> Result<bool, ClientError> {
        self.0.truth("broken", vec![]).await
    }
}
