//! A small Kubernetes API server over HTTPS, enough for the operator to start: version and
//! discovery, the ConCoordCluster CRD, empty lists and watches that stay open, and an
//! in-memory store for the objects the operator creates at start (its Lease, events).
//!
//! It has a CA and a serving certificate of its own (made with rcgen for 127.0.0.1), requires
//! the bearer token it writes into the kubeconfig it hands out, and records every request so
//! a test can check what the operator asked for. It is not a conformance fake: anything it
//! does not know answers 404 with a Kubernetes `Status`, as a real server does.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const TOKEN: &str = "fake-apiserver-test-token";
/// What /version says; the operator does not check it, kubectl-style clients print it.
const GIT_VERSION: &str = "v1.33.0-concoord-fake";

type Body = BoxBody<Bytes, Infallible>;

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorized: bool,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1")
    }
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// Objects created through the API, by their path (collection path + "/" + name).
    objects: BTreeMap<String, Value>,
    resource_version: u64,
}

pub struct FakeApiServer {
    pub addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts the server on 127.0.0.1 with a CA and serving certificate of its own.
    pub async fn start() -> FakeApiServer {
        let tls = super::tls_support::test_tls("fake-apiserver-ca");
        let acceptor = TlsAcceptor::from(Arc::new(tls.config));

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the fake API server: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local address: {e}"));
        let state = Arc::new(Mutex::new(State {
            resource_version: 100,
            ..State::default()
        }));
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = served.clone();
                tokio::spawn(async move {
                    // A client that gives up on the handshake is the client's business.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeApiServer {
            addr,
            ca_pem: tls.ca_pem,
            state,
            task,
        }
    }

    /// Writes a kubeconfig for this server (its CA embedded, the bearer token) to `path`.
    pub fn write_kubeconfig(&self, path: &Path) {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\nusers:\n- name: test\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\n    namespace: default\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }

    /// The objects created through the API, by path.
    pub fn objects(&self) -> BTreeMap<String, Value> {
        self.state
            .lock()
            .map(|s| s.objects.clone())
            .unwrap_or_default()
    }
}

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

/// The resources this server knows: (group/version prefix, plural, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("/api/v1", "pods", "Pod", true),
    ("/api/v1", "services", "Service", true),
    ("/api/v1", "configmaps", "ConfigMap", true),
    ("/api/v1", "serviceaccounts", "ServiceAccount", true),
    ("/api/v1", "secrets", "Secret", true),
    (
        "/api/v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    ("/api/v1", "events", "Event", true),
    ("/api/v1", "namespaces", "Namespace", false),
    ("/apis/apps/v1", "statefulsets", "StatefulSet", true),
    (
        "/apis/policy/v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    ("/apis/coordination.k8s.io/v1", "leases", "Lease", true),
    ("/apis/events.k8s.io/v1", "events", "Event", true),
    (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
    (
        "/apis/concoord.io/v1alpha1",
        "concoordclusters",
        "ConCoordCluster",
        true,
    ),
];

/// A request path taken apart: which resource, and the object's name when there is one.
struct Target {
    prefix: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    for (prefix, plural, kind, namespaced) in RESOURCES {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let (namespace, tail) = match parts.as_slice() {
            ["namespaces", ns, tail @ ..] if *namespaced && !tail.is_empty() => {
                (Some(ns.to_string()), tail)
            }
            tail => (None, tail),
        };
        match tail {
            [p] if p == plural => {
                return Some(Target {
                    prefix,
                    plural,
                    kind,
                    namespace,
                    name: None,
                });
            }
            [p, name] | [p, name, "status"] if p == plural => {
                return Some(Target {
                    prefix,
                    plural,
                    kind,
                    namespace,
                    name: Some(name.to_string()),
                });
            }
            _ => {}
        }
    }
    None
}

fn api_version(prefix: &str) -> String {
    prefix
        .trim_start_matches("/apis/")
        .trim_start_matches("/api/")
        .to_string()
}

fn discovery(path: &str) -> Option<Value> {
    match path {
        "/version" => Some(json!({
            "major": "1", "minor": "33", "gitVersion": GIT_VERSION,
            "platform": "linux/amd64", "goVersion": "go1.24",
        })),
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": []})),
        "/apis" => {
            let groups: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.0.starts_with("/apis/"))
                .map(|r| api_version(r.0))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|gv| {
                    let group = gv.split('/').next().unwrap_or_default().to_string();
                    let v = json!({"groupVersion": gv, "version": gv.rsplit('/').next()});
                    json!({"name": group, "versions": [v.clone()], "preferredVersion": v})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        _ => {
            let (prefix, ..) = RESOURCES.iter().find(|r| r.0 == path)?;
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.0 == *prefix)
                .map(|(_, plural, kind, namespaced)| {
                    json!({"name": plural, "kind": kind, "namespaced": namespaced,
                        "singularName": kind.to_lowercase(),
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
                })
                .collect();
            Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": api_version(prefix), "resources": resources}))
        }
    }
}

/// The CRD as the operator generates it, served as the API server would after installing it.
fn concoord_crd() -> Value {
    let yaml = concoord_operator::generate::crd_yaml()
        .unwrap_or_else(|e| panic!("the operator's CRD does not render: {e}"));
    let mut crd: Value =
        serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("the CRD is not YAML: {e}"));
    crd["status"] = json!({
        "conditions": [{"type": "Established", "status": "True"},
                       {"type": "NamesAccepted", "status": "True"}],
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": ["v1alpha1"],
    });
    crd
}

/// Merges `patch` into `into` (JSON merge patch; strategic and apply patches of the simple
/// objects created here, a Lease or an Event, merge the same way).
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

async fn answer(state: &Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Body> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        query,
        authorized,
    };
    let watch = seen.is_watch();
    if let Ok(mut s) = state.lock() {
        s.seen.push(seen);
    }
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if let Some(body) = discovery(&path) {
        return full(StatusCode::OK, &body);
    }
    let Some(target) = parse_target(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let Ok(mut s) = state.lock() else {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "state poisoned",
        );
    };
    s.resource_version += 1;
    let rv = s.resource_version.to_string();
    let collection = match &target.namespace {
        Some(ns) => format!("{}/namespaces/{ns}/{}", target.prefix, target.plural),
        None => format!("{}/{}", target.prefix, target.plural),
    };
    match (&method, &target.name) {
        (&Method::GET, None) if watch => {
            // An open watch: one bookmark at the current version, then nothing until the
            // client goes away (the server side of a quiet cluster).
            let bookmark = json!({"type": "BOOKMARK", "object": {
                "kind": target.kind, "apiVersion": api_version(target.prefix),
                "metadata": {"resourceVersion": rv}}});
            let first = futures::stream::once(async move {
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{bookmark}\n"))))
            });
            let quiet = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                None::<(Result<Frame<Bytes>, Infallible>, ())>
            });
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(
                futures::StreamExt::chain(first, quiet),
            )));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        (&Method::GET, None) => {
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|(p, _)| p.starts_with(&format!("{collection}/")))
                .map(|(_, o)| o.clone())
                .collect();
            full(
                StatusCode::OK,
                &json!({"kind": format!("{}List", target.kind),
                    "apiVersion": api_version(target.prefix),
                    "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        (&Method::GET, Some(name))
            if target.plural == "customresourcedefinitions"
                && name == "concoordclusters.concoord.io" =>
        {
            full(StatusCode::OK, &concoord_crd())
        }
        (&Method::GET, Some(name)) => match s.objects.get(&format!("{collection}/{name}")) {
            Some(o) => full(StatusCode::OK, o),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{}.{} \"{name}\" not found", target.plural, target.prefix),
            ),
        },
        (&Method::POST, None) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not JSON",
                );
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value",
                );
            };
            let key = format!("{collection}/{name}");
            if s.objects.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("\"{name}\" already exists"),
                );
            }
            object["metadata"]["resourceVersion"] = json!(rv);
            object["metadata"]["uid"] = json!(format!("uid-{rv}"));
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            if let Some(ns) = &target.namespace {
                object["metadata"]["namespace"] = json!(ns);
            }
            s.objects.insert(key, object.clone());
            full(StatusCode::CREATED, &object)
        }
        (&Method::PUT | &Method::PATCH, Some(name)) => {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not JSON",
                );
            };
            let key = format!("{collection}/{name}");
            let object = match (s.objects.get(&key), method == Method::PUT) {
                (_, true) => patch,
                (Some(existing), false) => {
                    let mut merged = existing.clone();
                    merge(&mut merged, &patch);
                    merged
                }
                (None, false) => {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("\"{name}\" not found"),
                    );
                }
            };
            let mut object = object;
            object["metadata"]["resourceVersion"] = json!(rv);
            s.objects.insert(key, object.clone());
            full(StatusCode::OK, &object)
        }
        (&Method::DELETE, Some(name)) => match s.objects.remove(&format!("{collection}/{name}")) {
            Some(o) => full(StatusCode::OK, &o),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("\"{name}\" not found"),
            ),
        },
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{method} is not supported on {path}"),
        ),
    }
}
