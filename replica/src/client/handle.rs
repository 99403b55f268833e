//! [`Client`]: the cheap, cloneable handle applications call through. Every clone talks to
//! the same background driver, so many tasks share one session and one pipelined connection.

use super::addr::Seeds;
use super::convert;
use super::driver::{Driver, NewCall, Shared, random_session};
use super::{ClientError, ClientOptions};
use crate::command::{Operation, SessionId, Value};
use crate::net::wire::StatusReport;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A connection to a ConCoord group, with a session of its own.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    calls: mpsc::UnboundedSender<NewCall>,
    shared: Arc<Shared>,
    opts: ClientOptions,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session_id())
            .finish_non_exhaustive()
    }
}

/// Methods that may wait inside the object until something else happens (lock acquire,
/// condition and barrier wait, queue get and put). They get `blocking_timeout`, not `call_timeout`.
/// A user type as the group reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TypeSummary {
    /// `module.Class`.
    pub name: String,
    pub sha256: String,
    /// Bytes of source.
    pub size: u64,
    pub methods: Vec<String>,
    /// Live objects of the type.
    pub objects: u64,
    /// Only from `show_type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl TypeSummary {
    fn from_value(v: Value) -> Result<TypeSummary, ClientError> {
        let bad = |what: &str| ClientError::Protocol(format!("type summary without {what}"));
        let Value::Map(fields) = v else {
            return Err(bad("fields"));
        };
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        let text = |k: &str| get(k).and_then(Value::as_str).map(str::to_string);
        Ok(TypeSummary {
            name: text("name").ok_or_else(|| bad("a name"))?,
            sha256: text("sha256").ok_or_else(|| bad("a sha256"))?,
            size: get("size").and_then(Value::as_u64).unwrap_or(0),
            methods: get("methods")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .filter_map(|m| m.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            objects: get("objects").and_then(Value::as_u64).unwrap_or(0),
            source: text("source"),
        })
    }
}

pub fn is_blocking_method(method: &str) -> bool {
    matches!(method, "acquire" | "wait" | "get" | "put")
}

impl Client {
    /// Connects to the group at `addrs` (`"127.0.0.1:14000, 127.0.0.1:14001"`, one
    /// `host:port`, or the group's domain, found through SRV), finds the leader and opens a
    /// session.
    pub async fn connect(addrs: &str, opts: ClientOptions) -> Result<Client, ClientError> {
        let parsed = Seeds::parse(addrs)?;
        let named = parsed.resolve_named().await?;
        let published: HashMap<String, String> = named
            .iter()
            .filter_map(|(a, n)| Some((a.clone(), n.clone()?)))
            .collect();
        let seeds: Vec<String> = named.into_iter().map(|(a, _)| a).collect();
        let domain = match parsed {
            Seeds::Domain(domain) => Some(domain),
            Seeds::Addrs(_) => None,
        };
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let (opened_tx, opened_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            session: AtomicU64::new(random_session()),
        });
        let driver = Driver::new(
            opts.clone(),
            seeds,
            published,
            domain,
            calls_rx,
            shared.clone(),
            opened_tx,
        );
        tokio::spawn(driver.run());
        match opened_rx.await {
            Ok(Ok(_)) => Ok(Client {
                inner: Arc::new(Inner {
                    calls: calls_tx,
                    shared,
                    opts,
                }),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// The current session (it changes when an expired session is replaced).
    pub fn session_id(&self) -> SessionId {
        self.inner.shared.session.load(Ordering::Relaxed)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Calls `method` on `object`. Blocking methods ([`is_blocking_method`]) wait for
    /// `blocking_timeout`, others for `call_timeout`.
    pub async fn call(
        &self,
        object: &str,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, ClientError> {
        let limit = if is_blocking_method(method) {
            self.inner.opts.blocking_timeout
        } else {
            self.inner.opts.call_timeout
        };
        self.call_with_timeout(object, method, args, limit).await
    }

    /// Like [`Client::call`] with an explicit deadline (`None`: wait until answered). A call
    /// that times out may still take effect on the replicas.
    pub async fn call_with_timeout(
        &self,
        object: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, ClientError> {
        let op = Operation::Call {
            object: object.to_string(),
            method: method.to_string(),
            args,
        };
        self.submit(op, timeout).await
    }

    /// Creates object `name` of `type_name` (`Counter` or `concoord.object.counter.Counter`)
    /// with constructor arguments `args`.
    pub async fn create(
        &self,
        name: &str,
        type_name: &str,
        args: Vec<Value>,
    ) -> Result<(), ClientError> {
        let op = Operation::Create {
            name: name.to_string(),
            type_name: type_name.to_string(),
            args,
        };
        self.submit(op, self.inner.opts.call_timeout)
            .await
            .map(drop)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        let op = Operation::Delete {
            name: name.to_string(),
        };
        self.submit(op, self.inner.opts.call_timeout)
            .await
            .map(drop)
    }

    /// The objects of the group: name -> type name.
    pub async fn list(&self) -> Result<BTreeMap<String, String>, ClientError> {
        let v = self
            .submit(Operation::List, self.inner.opts.call_timeout)
            .await?;
        convert::string_map(v)
    }

    /// Defines a user object type from Python source (module `module`, class `class`);
    /// with `replace`, swaps the code of a defined type, whose objects keep their state.
    /// Returns the type as the group now holds it.
    pub async fn define_type(
        &self,
        module: &str,
        class: &str,
        source: &str,
        replace: bool,
    ) -> Result<TypeSummary, ClientError> {
        let op = Operation::DefineType {
            module: module.to_string(),
            class: class.to_string(),
            source: source.to_string(),
            replace,
        };
        TypeSummary::from_value(self.submit(op, self.inner.opts.call_timeout).await?)
    }

    /// The user types of the group, by name.
    pub async fn list_types(&self) -> Result<Vec<TypeSummary>, ClientError> {
        match self
            .submit(Operation::ListTypes, self.inner.opts.call_timeout)
            .await?
        {
            Value::Array(items) => items.into_iter().map(TypeSummary::from_value).collect(),
            other => Err(ClientError::Protocol(format!(
                "expected a list of types, got {other}"
            ))),
        }
    }

    /// One user type, with its source.
    pub async fn show_type(&self, name: &str) -> Result<TypeSummary, ClientError> {
        let op = Operation::ShowType {
            name: name.to_string(),
        };
        TypeSummary::from_value(self.submit(op, self.inner.opts.call_timeout).await?)
    }

    /// Re-runs the object's constructor with `args` (`__concoordinit__`): a reset.
    pub async fn reinit(&self, object: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.call(object, "__concoordinit__", args).await.map(drop)
    }

    /// The object's `__str__`, e.g. `The counter value is 1` or `<DSemaphore object>`.
    pub async fn describe(&self, object: &str) -> Result<String, ClientError> {
        convert::string(self.call(object, "__str__", Vec::new()).await?)
    }

    /// Asks one replica (any member, not only the leader) for its status.
    pub async fn status(&self, addr: &str) -> Result<StatusReport, ClientError> {
        super::conn::fetch_status_with(
            addr,
            self.inner.opts.connect_timeout,
            self.inner.opts.tls.as_ref(),
        )
        .await
    }

    /// Ends the session: its locks and permits are released now. Every clone of this client
    /// is closed; later calls fail with `Closed`.
    pub async fn close(&self) -> Result<(), ClientError> {
        match self
            .submit(Operation::CloseSession, self.inner.opts.call_timeout)
            .await
        {
            Ok(_) | Err(ClientError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn submit(&self, op: Operation, timeout: Option<Duration>) -> Result<Value, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .calls
            .send(NewCall { op, reply })
            .map_err(|_| ClientError::Closed)?;
        let answer = match timeout {
            Some(limit) => tokio::time::timeout(limit, answer)
                .await
                .map_err(|_| ClientError::Timeout)?,
            None => answer.await,
        };
        answer.map_err(|_| ClientError::Closed)?
    }
}
