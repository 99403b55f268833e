//! Reconcile against a mocked API server (tower-test) and fake replicas: each test asserts
//! the exact requests one reconcile sends for create, scale up, scale down, upgrade and
//! deletion, and the key fields of what it sends.

use crate::crd::ConCoordCluster;
use crate::metrics::Metrics;
use crate::names::ClusterNames;
use crate::reconcile::{Context, reconcile};
use crate::replicas::Replicas;
use crate::route53::credentials;
use async_trait::async_trait;
use concoord::client::{ClientError, TypeSummary};
use concoord::command::View;
use concoord::net::wire::StatusReport;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NS: &str = "apps";
/// A Route53 endpoint nobody listens on: cleanup fails without leaving the machine.
const ROUTE53_NOWHERE: &str = "http://127.0.0.1:9";

/// One request the API server received.
#[derive(Clone, Debug)]
struct Seen {
    line: String,
    query: String,
    body: Value,
}

/// What the fake API server holds.
#[derive(Clone)]
struct ApiState {
    cc: Value,
    statefulset: Option<Value>,
    pods: Vec<Value>,
    /// Ordinals whose volume claim exists.
    claims: Vec<u32>,
    /// User ConfigMaps: name -> data.
    configmaps: BTreeMap<String, Value>,
    /// Secrets by name (besides `aws-creds`).
    secrets: BTreeMap<String, Value>,
}

impl Default for ApiState {
    /// A cluster whose certificates exist and are current (what every reconcile after the
    /// first one sees).
    fn default() -> ApiState {
        ApiState {
            cc: Value::Null,
            statefulset: None,
            pods: Vec::new(),
            claims: Vec::new(),
            configmaps: BTreeMap::new(),
            secrets: current_secrets(),
        }
    }
}

fn secret_json(secret: &k8s_openapi::api::core::v1::Secret) -> Value {
    serde_json::to_value(secret).unwrap()
}

/// The CA, server and client certificate Secrets of cluster `demo`, valid for 90 days.
fn current_secrets() -> BTreeMap<String, Value> {
    use crate::security::{ca_secret, tls_secret};
    use concoord::pki::{self, CertKind};
    let names = ClusterNames::new("demo", NS);
    let meta = |name: String| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        namespace: Some(NS.into()),
        ..Default::default()
    };
    let ca = pki::new_ca("demo CA", 3650).unwrap();
    let server = pki::issue(
        &ca,
        "demo",
        &crate::security::server_hosts(&names, &names.default_domain()),
        90,
        CertKind::Replica,
    )
    .unwrap();
    let client = pki::issue(&ca, "demo-client", &[], 90, CertKind::Client).unwrap();
    BTreeMap::from([
        (
            names.ca_secret(),
            secret_json(&ca_secret(meta(names.ca_secret()), &ca)),
        ),
        (
            names.server_tls_secret(),
            secret_json(&tls_secret(
                meta(names.server_tls_secret()),
                &server,
                &ca.cert,
            )),
        ),
        (
            names.client_tls_secret(),
            secret_json(&tls_secret(
                meta(names.client_tls_secret()),
                &client,
                &ca.cert,
            )),
        ),
    ])
}

fn respond(state: &ApiState, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": format!("{path} not found")});
    let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
    match method {
        "GET" if path.ends_with("/statefulsets/demo") => match &state.statefulset {
            Some(s) => (200, s.clone()),
            None => (404, not_found),
        },
        "GET" if path.ends_with("/secrets/aws-creds") => (
            200,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "aws-creds", "namespace": NS},
                // "testing" in base64, for both keys.
                "data": {"aws_access_key_id": "dGVzdGluZw==",
                    "aws_secret_access_key": "dGVzdGluZw=="}}),
        ),
        "GET" if path.contains("/secrets/") => {
            let name = path.rsplit('/').next().unwrap_or_default();
            match state.secrets.get(name) {
                Some(secret) => (200, secret.clone()),
                None => (404, not_found),
            }
        }
        "POST" if path.ends_with("/secrets") => (201, body.clone()),
        "GET" if path.contains("/configmaps/") => {
            let name = path.rsplit('/').next().unwrap_or_default();
            match state.configmaps.get(name) {
                Some(data) => (
                    200,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": NS}, "data": data}),
                ),
                None => (404, not_found),
            }
        }
        "GET" if path.ends_with("/pods") => (
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": state.pods}),
        ),
        "GET" if path.ends_with("/persistentvolumeclaims") => {
            let items: Vec<Value> = state
                .claims
                .iter()
                .map(|i| {
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": format!("data-demo-{i}"), "namespace": NS,
                            "labels": {"app.kubernetes.io/instance": "demo"}}})
                })
                .collect();
            (
                200,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList",
                    "metadata": {}, "items": items}),
            )
        }
        "PATCH" if path.ends_with("/concoordclusters/demo/status") => {
            let mut cc = state.cc.clone();
            cc["status"] = body["status"].clone();
            (200, cc)
        }
        "PATCH" if path.ends_with("/concoordclusters/demo") => (200, state.cc.clone()),
        // Server-side apply answers with the object.
        "PATCH" => (200, body.clone()),
        "POST" if path.contains("/events") => (201, body.clone()),
        "DELETE" => (200, ok),
        _ => (404, not_found),
    }
}

/// Starts the fake API server; returns the client and the log of requests.
fn api_server(state: ApiState) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let record = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let method = parts.method.to_string();
            let path = parts.uri.path().to_string();
            let (code, answer) = respond(&state, &method, &path, &body);
            record.lock().unwrap().push(Seen {
                line: format!("{method} {path}"),
                query: parts.uri.query().unwrap_or("").to_string(),
                body,
            });
            let response = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (kube::Client::new(service, NS), log)
}

/// Replicas that answer from a table, recording membership changes.
#[derive(Default)]
struct FakeReplicas {
    reports: Mutex<BTreeMap<String, StatusReport>>,
    changes: Mutex<Vec<String>>,
    /// User types the group runs.
    types: Mutex<Vec<TypeSummary>>,
}

#[async_trait]
impl Replicas for FakeReplicas {
    // The fake answers every cluster alike.
    fn with_credentials(
        self: Arc<Self>,
        _creds: concoord::client::Credentials,
    ) -> Arc<dyn Replicas> {
        self
    }

    async fn status(&self, addr: &str) -> Result<StatusReport, ClientError> {
        self.reports
            .lock()
            .unwrap()
            .get(addr)
            .cloned()
            .ok_or(ClientError::Timeout)
    }
    async fn add_member(&self, _seeds: &[String], member: &str) -> Result<u64, ClientError> {
        self.changes.lock().unwrap().push(format!("add {member}"));
        Ok(9)
    }
    async fn remove_member(&self, _seeds: &[String], member: &str) -> Result<u64, ClientError> {
        self.changes
            .lock()
            .unwrap()
            .push(format!("remove {member}"));
        Ok(9)
    }
    async fn ensure_object(
        &self,
        _seeds: &[String],
        name: &str,
        type_name: &str,
        _args: &[Value],
    ) -> Result<(), ClientError> {
        self.changes
            .lock()
            .unwrap()
            .push(format!("create {name} {type_name}"));
        Ok(())
    }
    async fn list_types(&self, _seeds: &[String]) -> Result<Vec<TypeSummary>, ClientError> {
        Ok(self.types.lock().unwrap().clone())
    }
    /// Refuses sources with a syntax error the way the replicas do; otherwise defines
    /// `module.TenCounter` (the only class the tests use).
    async fn define_type(
        &self,
        _seeds: &[String],
        module: &str,
        class: &str,
        source: &str,
    ) -> Result<(String, String), ClientError> {
        if source.contains("(:") {
            return Err(ClientError::Remote {
                kind: "SyntaxError".into(),
                message: "invalid syntax at line 1".into(),
            });
        }
        let class = if class.is_empty() {
            "TenCounter"
        } else {
            class
        };
        let name = format!("{module}.{class}");
        let sha256 = concoord::object::sandbox::sha256_hex(source.as_bytes());
        self.changes.lock().unwrap().push(format!("define {name}"));
        let mut types = self.types.lock().unwrap();
        types.retain(|t| t.name != name);
        types.push(TypeSummary {
            name: name.clone(),
            sha256: sha256.clone(),
            size: source.len() as u64,
            methods: vec![],
            objects: 0,
            source: None,
        });
        Ok((name, sha256))
    }
}

fn addr(i: u32) -> String {
    format!("demo-{i}.demo-peers.{NS}.svc.cluster.local:14000")
}

/// Reports of a group whose voters are pods `voters`, learners `learners`, led by `leader`.
fn group(voters: &[u32], learners: &[u32], leader: u32) -> BTreeMap<String, StatusReport> {
    let id = |i: u32| u64::from(i) + 1;
    let view = View {
        number: 7,
        members: voters.iter().map(|&i| (id(i), addr(i))).collect(),
        learners: learners.iter().map(|&i| (id(i), addr(i))).collect(),
        next_id: 20,
        group: 42,
    };
    voters
        .iter()
        .chain(learners)
        .map(|&i| {
            let report = StatusReport {
                replica: id(i),
                addr: addr(i),
                view: view.clone(),
                leader: Some(id(leader)),
                is_leader: i == leader,
                ballot: (3, id(leader)),
                decided_upto: 100,
                executed_upto: 100,
                sessions: 0,
                objects: 1,
                state: if learners.contains(&i) {
                    "learner".into()
                } else {
                    "member".into()
                },
            };
            (addr(i), report)
        })
        .collect()
}

fn cluster(replicas: i32, status: Value) -> Value {
    json!({
        "apiVersion": "concoord.io/v1alpha1",
        "kind": "ConCoordCluster",
        "metadata": {"name": "demo", "namespace": NS, "uid": "u-1", "generation": 2},
        "spec": {"replicas": replicas, "objects": [{"name": "counter", "type": "Counter"}]},
        "status": status,
    })
}

fn members_status(n: u32, leader: u32) -> Value {
    let members: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("demo-{i}"), "address": addr(i), "id": i + 1,
            "leader": i == leader, "healthy": true, "learner": false})
        })
        .collect();
    json!({"bootstrapped": true, "replicas": n, "members": members,
        "leader": format!("demo-{leader}")})
}

fn statefulset(replicas: u32, revision: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "demo", "namespace": NS},
        "spec": {"replicas": replicas, "serviceName": "demo-peers",
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "demo"}},
            "template": {"spec": {"containers": []}}},
        "status": {"replicas": replicas, "updateRevision": revision},
    })
}

fn pods(n: u32, revision: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("demo-{i}"), "namespace": NS,
                    "labels": {"app.kubernetes.io/instance": "demo",
                        "controller-revision-hash": revision}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            })
        })
        .collect()
}

struct Run {
    requests: Vec<Seen>,
    changes: Vec<String>,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.requests.iter().map(|r| r.line.as_str()).collect()
    }
    fn body(&self, line: &str) -> &Value {
        &self
            .requests
            .iter()
            .find(|r| r.line == line)
            .unwrap_or_else(|| panic!("no request {line}"))
            .body
    }
}

async fn reconcile_once(state: ApiState, reports: BTreeMap<String, StatusReport>) -> Run {
    let (run, result) = reconcile_result(state, reports).await;
    result.expect("reconcile succeeded");
    run
}

fn context(client: kube::Client, replicas: Arc<FakeReplicas>) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        replicas,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "concoord-operator".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(Metrics::new()),
        replica_image: None,
        route53_endpoint: Some(ROUTE53_NOWHERE.into()),
        cluster_domain: "cluster.local".into(),
    })
}

async fn reconcile_result(
    state: ApiState,
    reports: BTreeMap<String, StatusReport>,
) -> (Run, Result<(), String>) {
    let replicas = Arc::new(FakeReplicas {
        reports: Mutex::new(reports),
        ..FakeReplicas::default()
    });
    reconcile_with(state, replicas).await
}

async fn reconcile_with(state: ApiState, replicas: Arc<FakeReplicas>) -> (Run, Result<(), String>) {
    let cc: ConCoordCluster = serde_json::from_value(state.cc.clone()).unwrap();
    let (client, log) = api_server(state);
    let ctx = context(client, replicas.clone());
    let result = tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(cc), ctx))
        .await
        .expect("reconcile finished in time")
        .map(drop)
        .map_err(|e| e.to_string());
    let requests = log.lock().unwrap().clone();
    let changes = replicas.changes.lock().unwrap().clone();
    (Run { requests, changes }, result)
}

const GET_STS: &str = "GET /apis/apps/v1/namespaces/apps/statefulsets/demo";
const LIST_PODS: &str = "GET /api/v1/namespaces/apps/pods";
const LIST_CLAIMS: &str = "GET /api/v1/namespaces/apps/persistentvolumeclaims";
const APPLY_STS: &str = "PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo";
const APPLY_CM: &str = "PATCH /api/v1/namespaces/apps/configmaps/demo-bootstrap";
const STATUS: &str =
    "PATCH /apis/concoord.io/v1alpha1/namespaces/apps/concoordclusters/demo/status";
const EVENT: &str = "POST /apis/events.k8s.io/v1/namespaces/apps/events";

const GET_CA: &str = "GET /api/v1/namespaces/apps/secrets/demo-ca";
const GET_SERVER_TLS: &str = "GET /api/v1/namespaces/apps/secrets/demo-server-tls";
const GET_CLIENT_TLS: &str = "GET /api/v1/namespaces/apps/secrets/demo-client-tls";
const APPLY_NETWORK_POLICY: &str =
    "PATCH /apis/networking.k8s.io/v1/namespaces/apps/networkpolicies/demo";

/// Check the certificates, observe, apply all owned objects, then `act`, then the status.
fn expected(act: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec![
        GET_CA,
        GET_SERVER_TLS,
        GET_CLIENT_TLS,
        GET_STS,
        LIST_PODS,
        LIST_CLAIMS,
        "PATCH /api/v1/namespaces/apps/serviceaccounts/demo",
        APPLY_CM,
        "PATCH /api/v1/namespaces/apps/services/demo-peers",
        "PATCH /api/v1/namespaces/apps/services/demo",
        "PATCH /api/v1/namespaces/apps/services/demo-dns",
        "PATCH /apis/policy/v1/namespaces/apps/poddisruptionbudgets/demo",
        APPLY_NETWORK_POLICY,
        APPLY_STS,
    ];
    v.extend_from_slice(act);
    v.push(STATUS);
    v
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn create_bootstraps_one_pod_that_may_found() {
    let state = ApiState {
        cc: cluster(3, Value::Null),
        ..ApiState::default()
    };
    let run = reconcile_once(state, BTreeMap::new()).await;
    assert_eq!(run.lines(), expected(&[]));
    // Every apply is server-side, forced, by our field manager.
    for r in run
        .requests
        .iter()
        .filter(|r| r.line.starts_with("PATCH") && r.line != STATUS)
    {
        assert!(
            r.query.contains("fieldManager=concoord-operator"),
            "{}",
            r.query
        );
        assert!(r.query.contains("force=true"), "{}", r.query);
    }
    let list = run.requests.iter().find(|r| r.line == LIST_PODS).unwrap();
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Finstance%3Ddemo"),
        "{}",
        list.query
    );
    assert_eq!(run.body(APPLY_STS)["spec"]["replicas"], 1);
    assert_eq!(run.body(APPLY_CM)["data"]["found-if"], "demo-0");
    let status = &run.body(STATUS)["status"];
    assert_eq!(status["bootstrapped"], false);
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(condition(status, "Progressing")["reason"], "Bootstrapping");
    assert_eq!(condition(status, "Available")["status"], "False");
    assert!(run.changes.is_empty());

    // Pod 0 answers: the group is recorded, the objects created, found-if cleared.
    let state = ApiState {
        cc: cluster(3, json!({"bootstrapped": false})),
        statefulset: Some(statefulset(1, "r1")),
        pods: pods(1, "r1"),
        claims: vec![0],
        configmaps: BTreeMap::new(),
        secrets: current_secrets(),
    };
    let run = reconcile_once(state, group(&[0], &[], 0)).await;
    assert_eq!(run.lines(), expected(&[EVENT]));
    assert_eq!(run.changes, ["create counter Counter"]);
    assert_eq!(run.body(APPLY_CM)["data"]["found-if"], "");
    assert_eq!(run.body(EVENT)["reason"], "Bootstrapped");
    let status = &run.body(STATUS)["status"];
    assert_eq!(status["bootstrapped"], true);
    assert_eq!(status["leader"], "demo-0");
    assert_eq!(condition(status, "Available")["status"], "True");
}

#[tokio::test]
async fn scale_up_adds_the_member_then_grows() {
    let state = ApiState {
        cc: cluster(5, members_status(3, 0)),
        statefulset: Some(statefulset(3, "r1")),
        pods: pods(3, "r1"),
        claims: (0..3).collect(),
        configmaps: BTreeMap::new(),
        secrets: current_secrets(),
    };
    let run = reconcile_once(state.clone(), group(&[0, 1, 2], &[], 0)).await;
    assert_eq!(run.lines(), expected(&[EVENT]));
    assert_eq!(run.changes, [format!("add {}", addr(3))]);
    assert_eq!(run.body(APPLY_STS)["spec"]["replicas"], 3);
    assert_eq!(run.body(EVENT)["reason"], "MemberAdded");
    assert_eq!(run.body(EVENT)["type"], "Normal");

    // Next reconcile: the learner is in the view, so its pod is started.
    let run = reconcile_once(state, group(&[0, 1, 2], &[3], 0)).await;
    assert_eq!(run.lines(), expected(&[]));
    assert!(run.changes.is_empty());
    assert_eq!(run.body(APPLY_STS)["spec"]["replicas"], 4);
    let status = &run.body(STATUS)["status"];
    assert_eq!(status["replicas"], 4);
    assert_eq!(status["members"][3]["learner"], true);
    assert_eq!(condition(status, "Progressing")["reason"], "ScalingUp");
    assert_eq!(
        condition(status, "Progressing")["message"],
        "growing the StatefulSet to 4 pods"
    );
}

#[tokio::test]
async fn scale_down_removes_the_member_then_shrinks() {
    let state = ApiState {
        // The last status saw demo-0 lead.
        cc: cluster(3, members_status(5, 0)),
        statefulset: Some(statefulset(5, "r1")),
        pods: pods(5, "r1"),
        claims: (0..5).collect(),
        configmaps: BTreeMap::new(),
        secrets: current_secrets(),
    };
    // The leader is the highest pod: it is removed like any other (it hands over).
    let run = reconcile_once(state.clone(), group(&[0, 1, 2, 3, 4], &[], 4)).await;
    assert_eq!(run.lines(), expected(&[EVENT, EVENT]));
    assert_eq!(run.changes, [format!("remove {}", addr(4))]);
    assert_eq!(run.body(APPLY_STS)["spec"]["replicas"], 5);
    let reasons: Vec<&Value> = run
        .requests
        .iter()
        .filter(|r| r.line == EVENT)
        .map(|r| &r.body["reason"])
        .collect();
    assert_eq!(reasons, [&json!("MemberRemoved"), &json!("LeaderChanged")]);

    let run = reconcile_once(state.clone(), group(&[0, 1, 2, 3], &[], 0)).await;
    assert_eq!(run.lines(), expected(&[]));
    assert!(run.changes.is_empty());
    assert_eq!(run.body(APPLY_STS)["spec"]["replicas"], 4);
    // Claims outlive the shrink (a hand-made scale to 0 loses nothing).
    assert_eq!(
        run.body(APPLY_STS)["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Retain"
    );

    // Shrunk: the claim of the member that left is deleted by the operator.
    let state = ApiState {
        statefulset: Some(statefulset(4, "r1")),
        pods: pods(4, "r1"),
        ..state
    };
    let run = reconcile_once(state, group(&[0, 1, 2, 3], &[], 0)).await;
    assert_eq!(
        run.lines(),
        expected(&[
            "DELETE /api/v1/namespaces/apps/persistentvolumeclaims/data-demo-4",
            EVENT
        ])
    );
    assert!(run.changes.is_empty());
    assert_eq!(run.body(EVENT)["reason"], "ClaimDeleted");
    let list = run.requests.iter().find(|r| r.line == LIST_CLAIMS).unwrap();
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Finstance%3Ddemo"),
        "{}",
        list.query
    );
}

#[tokio::test]
async fn upgrade_rolls_a_follower_first() {
    let mut cc = cluster(3, members_status(3, 2));
    cc["spec"]["version"] = json!("0.2.0");
    let state = ApiState {
        cc,
        statefulset: Some(statefulset(3, "r2")),
        pods: pods(3, "r1"),
        claims: (0..3).collect(),
        configmaps: BTreeMap::new(),
        secrets: current_secrets(),
    };
    let run = reconcile_once(state.clone(), group(&[0, 1, 2], &[], 2)).await;
    assert_eq!(
        run.lines(),
        expected(&["DELETE /api/v1/namespaces/apps/pods/demo-1", EVENT])
    );
    let image = &run.body(APPLY_STS)["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "concoord/replica:0.2.0");
    assert_eq!(run.body(EVENT)["reason"], "PodRolled");

    // A pod that was not rolled is not ready: the update is blocked, with a warning.
    let mut state = state;
    state.pods[0]["status"]["conditions"][0]["status"] = json!("False");
    let run = reconcile_once(state, group(&[0, 1, 2], &[], 2)).await;
    assert_eq!(run.lines(), expected(&[EVENT]));
    assert_eq!(run.body(EVENT)["reason"], "UpgradeBlocked");
    assert_eq!(run.body(EVENT)["type"], "Warning");
}

#[tokio::test]
async fn deletion_leaves_children_to_owner_references_and_route53_adds_a_finalizer() {
    // Without Route53 there is no finalizer: a deleted cluster needs no request at all.
    let mut cc = cluster(3, members_status(3, 0));
    cc["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let run = reconcile_once(
        ApiState {
            cc,
            ..ApiState::default()
        },
        BTreeMap::new(),
    )
    .await;
    assert!(run.lines().is_empty(), "{:?}", run.lines());

    // With Route53 the finalizer is added first (and nothing else in that reconcile).
    let mut cc = cluster(3, members_status(3, 0));
    cc["spec"]["route53"] = json!({"zoneId": "Z1"});
    let run = reconcile_once(
        ApiState {
            cc,
            ..ApiState::default()
        },
        BTreeMap::new(),
    )
    .await;
    assert_eq!(
        run.lines(),
        ["PATCH /apis/concoord.io/v1alpha1/namespaces/apps/concoordclusters/demo"]
    );
    let patch = run.requests[0].body.to_string();
    assert!(patch.contains("concoord.io/route53-records"), "{patch}");
}

#[tokio::test]
async fn a_deleted_cluster_keeps_its_finalizer_while_route53_cleanup_fails() {
    let mut cc = cluster(3, members_status(3, 0));
    cc["spec"]["route53"] = json!({"zoneId": "Z1", "credentialsSecret": {"name": "aws-creds"}});
    cc["metadata"]["finalizers"] = json!(["concoord.io/route53-records"]);
    cc["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let (run, result) = reconcile_result(
        ApiState {
            cc,
            ..ApiState::default()
        },
        BTreeMap::new(),
    )
    .await;
    // The credentials are read, Route53 is unreachable: no request removes the finalizer.
    assert_eq!(
        run.lines(),
        ["GET /api/v1/namespaces/apps/secrets/aws-creds"]
    );
    let err = result.unwrap_err();
    assert!(
        err.contains("Route53 cleanup") && err.contains("Z1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_removed_replica_in_a_wanted_pod_is_replaced_with_an_empty_volume() {
    let state = ApiState {
        cc: cluster(3, members_status(3, 0)),
        statefulset: Some(statefulset(3, "r1")),
        pods: pods(3, "r1"),
        claims: (0..3).collect(),
        configmaps: BTreeMap::new(),
        secrets: current_secrets(),
    };
    // Pod 1's replica was removed from the view (by hand); it still answers as "removed".
    let mut reports = group(&[0, 2], &[], 0);
    let mut removed = reports[&addr(0)].clone();
    removed.replica = 2;
    removed.addr = addr(1);
    removed.is_leader = false;
    removed.state = "removed".into();
    reports.insert(addr(1), removed);
    let run = reconcile_once(state, reports).await;
    assert_eq!(
        run.lines(),
        expected(&[
            "DELETE /api/v1/namespaces/apps/persistentvolumeclaims/data-demo-1",
            "DELETE /api/v1/namespaces/apps/pods/demo-1",
            EVENT
        ])
    );
    assert_eq!(run.body(EVENT)["reason"], "MemberReplaced");
    assert_eq!(run.body(EVENT)["type"], "Warning");
    assert!(run.changes.is_empty());
}

#[tokio::test]
async fn a_silent_group_clears_leader_view_and_members_but_remembers_the_pods() {
    let mut status = members_status(3, 0);
    status["view"] = json!(7);
    let state = ApiState {
        cc: cluster(3, status),
        statefulset: Some(statefulset(3, "r1")),
        pods: pods(3, "r1"),
        claims: (0..3).collect(),
        configmaps: BTreeMap::new(),
        secrets: current_secrets(),
    };
    // No replica answers: the merge patch must clear what is no longer known.
    let run = reconcile_once(state.clone(), BTreeMap::new()).await;
    assert_eq!(run.lines(), expected(&[]));
    let status = run.body(STATUS)["status"].as_object().unwrap();
    assert_eq!(status.get("leader"), Some(&Value::Null), "{status:?}");
    assert_eq!(status.get("view"), Some(&Value::Null), "{status:?}");
    assert_eq!(status.get("members"), Some(&json!([])), "{status:?}");
    // The pods to bring back and ask are kept in their own field.
    assert_eq!(
        status.get("lastKnownMembers"),
        Some(&json!(["demo-0", "demo-1", "demo-2"]))
    );
    assert_eq!(
        condition(&run.body(STATUS)["status"], "Progressing")["message"],
        "no replica answers"
    );

    // They answer again with two members: all of it is current again.
    let run = reconcile_once(state, group(&[0, 1], &[], 1)).await;
    let status = &run.body(STATUS)["status"];
    assert_eq!(status["leader"], "demo-1");
    assert_eq!(status["view"], 7);
    assert_eq!(status["lastKnownMembers"], json!(["demo-0", "demo-1"]));
}

#[tokio::test]
async fn a_missing_credentials_secret_falls_back_to_the_ambient_chain_with_a_warning() {
    let names = ClusterNames::new("demo", NS);
    let with_secret = |secret: &str| {
        let mut cc = cluster(3, members_status(3, 0));
        cc["spec"]["route53"] = json!({"zoneId": "Z1", "credentialsSecret": {"name": secret}});
        cc
    };
    // The Secret went first (its namespace is being deleted): no retry loop, a Warning.
    let cc = with_secret("gone");
    let parsed: ConCoordCluster = serde_json::from_value(cc.clone()).unwrap();
    let (client, log) = api_server(ApiState {
        cc,
        ..ApiState::default()
    });
    let ctx = context(client, Arc::new(FakeReplicas::default()));
    let stored = credentials(&parsed, &names, &ctx).await.unwrap();
    assert!(stored.key_id.is_none() && stored.secret.is_none());
    let requests = log.lock().unwrap().clone();
    let lines: Vec<&str> = requests.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(lines, ["GET /api/v1/namespaces/apps/secrets/gone", EVENT]);
    assert_eq!(requests[1].body["type"], "Warning");
    assert_eq!(requests[1].body["reason"], "CredentialsSecretMissing");

    // The Secret is there: its keys are used, no event.
    let cc = with_secret("aws-creds");
    let parsed: ConCoordCluster = serde_json::from_value(cc.clone()).unwrap();
    let (client, log) = api_server(ApiState {
        cc,
        ..ApiState::default()
    });
    let ctx = context(client, Arc::new(FakeReplicas::default()));
    let stored = credentials(&parsed, &names, &ctx).await.unwrap();
    assert_eq!(stored.key_id.as_deref(), Some("testing"));
    assert_eq!(stored.secret.as_deref(), Some("testing"));
    assert_eq!(log.lock().unwrap().len(), 1);
}

const TEN: &str = "class TenCounter:\n    def increment(self):\n        pass\n";
const GET_TYPES_CM: &str = "GET /api/v1/namespaces/apps/configmaps/types";

/// spec.objectTypes: a type is defined once the group has a leader, not again while its
/// source is unchanged, again (replace) when the ConfigMap changes, and a source the
/// replicas refuse sets Degraded with their message and keeps the type that runs.
#[tokio::test]
async fn object_types_are_defined_from_configmaps_and_a_refused_one_degrades() {
    let mut cc = cluster(3, members_status(3, 0));
    cc["spec"]["objectTypes"] =
        json!([{"configMapRef": {"name": "types", "key": "tencounter.py"}}]);
    let mut state = ApiState {
        cc,
        statefulset: Some(statefulset(3, "r1")),
        pods: pods(3, "r1"),
        claims: (0..3).collect(),
        configmaps: BTreeMap::from([("types".to_string(), json!({"tencounter.py": TEN}))]),
        secrets: current_secrets(),
    };
    let replicas = Arc::new(FakeReplicas {
        reports: Mutex::new(group(&[0, 1, 2], &[], 0)),
        ..FakeReplicas::default()
    });
    let (run, result) = reconcile_with(state.clone(), replicas.clone()).await;
    result.unwrap();
    assert_eq!(run.changes, ["define tencounter.TenCounter"]);
    assert!(run.lines().contains(&GET_TYPES_CM));
    let status = run.body(STATUS)["status"].clone();
    let sha = concoord::object::sandbox::sha256_hex(TEN.as_bytes());
    assert_eq!(
        status["objectTypes"],
        json!([{"name": "tencounter.TenCounter", "sha256": sha, "source": "types/tencounter.py"}])
    );
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    assert_eq!(run.body(EVENT)["reason"], "ObjectTypeDefined");

    // Unchanged: nothing is defined again.
    state.cc["status"] = status.clone();
    replicas.changes.lock().unwrap().clear();
    let (run, result) = reconcile_with(state.clone(), replicas.clone()).await;
    result.unwrap();
    assert!(run.changes.is_empty(), "{:?}", run.changes);

    // A broken class: refused, Degraded, the running type stays in the status.
    state.configmaps.insert(
        "types".into(),
        json!({"tencounter.py": "class TenCounter(:\n"}),
    );
    replicas.changes.lock().unwrap().clear();
    let (run, result) = reconcile_with(state.clone(), replicas.clone()).await;
    result.unwrap();
    assert!(run.changes.is_empty());
    let broken = run.body(STATUS)["status"].clone();
    let degraded = condition(&broken, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ObjectTypeRejected");
    assert_eq!(
        degraded["message"],
        "types/tencounter.py: SyntaxError: invalid syntax at line 1"
    );
    assert_eq!(broken["objectTypes"], status["objectTypes"]);
    assert_eq!(run.body(EVENT)["reason"], "ObjectTypeRejected");

    // Fixed and changed: defined again (replace), Degraded clears.
    let v2 = TEN.replace("pass", "return 1");
    state.cc["status"] = broken;
    state
        .configmaps
        .insert("types".into(), json!({"tencounter.py": v2}));
    replicas.changes.lock().unwrap().clear();
    let (run, result) = reconcile_with(state, replicas).await;
    result.unwrap();
    assert_eq!(run.changes, ["define tencounter.TenCounter"]);
    let fixed = &run.body(STATUS)["status"];
    assert_eq!(
        fixed["objectTypes"][0]["sha256"],
        concoord::object::sandbox::sha256_hex(v2.as_bytes())
    );
    assert_eq!(condition(fixed, "Degraded")["status"], "False");
}

/// The decoded text of one key of a Secret the operator sent.
fn secret_text(body: &Value, key: &str) -> String {
    use base64::Engine;
    let b64 = body["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

const APPLY_CA: &str = "PATCH /api/v1/namespaces/apps/secrets/demo-ca";
const APPLY_SERVER_TLS: &str = "PATCH /api/v1/namespaces/apps/secrets/demo-server-tls";
const APPLY_CLIENT_TLS: &str = "PATCH /api/v1/namespaces/apps/secrets/demo-client-tls";

/// A new cluster with auth: the operator makes its CA, the replicas' and the applications'
/// certificates, both tokens and the auth file, mounts them in the pods, and reports the
/// certificates' expiry.
#[tokio::test]
async fn a_new_cluster_gets_its_certificates_tokens_and_auth_file() {
    let mut cc = cluster(3, Value::Null);
    cc["spec"]["auth"] = json!({"enabled": true});
    let state = ApiState {
        cc,
        secrets: BTreeMap::new(),
        ..ApiState::default()
    };
    let run = reconcile_once(state, BTreeMap::new()).await;
    let lines = run.lines();
    let security = [
        GET_CA,
        APPLY_CA,
        GET_SERVER_TLS,
        APPLY_SERVER_TLS,
        GET_CLIENT_TLS,
        APPLY_CLIENT_TLS,
        "GET /api/v1/namespaces/apps/secrets/demo-admin-token",
        "POST /api/v1/namespaces/apps/secrets",
        "GET /api/v1/namespaces/apps/secrets/demo-app-token",
        "POST /api/v1/namespaces/apps/secrets",
        "GET /api/v1/namespaces/apps/secrets/demo-auth",
        "PATCH /api/v1/namespaces/apps/secrets/demo-auth",
        EVENT,
    ];
    assert_eq!(lines[..security.len()], security);

    // The CA stays with the operator; the pods get certificates it signed.
    let ca = secret_text(run.body(APPLY_CA), "ca.crt");
    assert!(secret_text(run.body(APPLY_CA), "ca.key").contains("PRIVATE KEY"));
    let server = run.body(APPLY_SERVER_TLS);
    assert_eq!(server["type"], "kubernetes.io/tls");
    assert_eq!(secret_text(server, "ca.crt"), ca);
    let info = concoord::pki::inspect(&secret_text(server, "tls.crt")).unwrap();
    assert!(
        info.hosts
            .contains(&"*.demo-peers.apps.svc.cluster.local".to_string())
    );
    assert!(info.hosts.contains(&"127.0.0.1".to_string()));
    // The names the cluster's nameserver publishes in SRV records (r<id>.<domain>).
    assert!(info.hosts.contains(&"*.demo.apps.concoord".to_string()));
    let client = concoord::pki::inspect(&secret_text(run.body(APPLY_CLIENT_TLS), "tls.crt"));
    assert_eq!(client.and_then(|c| c.name).as_deref(), Some("demo-client"));

    // Tokens are random and long; the auth file holds their digests only.
    let tokens: Vec<String> = run
        .requests
        .iter()
        .filter(|r| r.line == "POST /api/v1/namespaces/apps/secrets")
        .map(|r| secret_text(&r.body, "token"))
        .collect();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.len() == 64) && tokens[0] != tokens[1]);
    let file = secret_text(
        run.body("PATCH /api/v1/namespaces/apps/secrets/demo-auth"),
        "auth",
    );
    for t in &tokens {
        assert!(!file.contains(t.as_str()), "a token in the auth file");
    }
    let policy = concoord::auth::AuthPolicy::parse(&file).unwrap();
    let admin = policy
        .authenticate(Some(&concoord::auth::Token::new(&tokens[0])), None)
        .unwrap();
    assert_eq!(policy.role_of(&admin), Some(concoord::auth::Role::Admin));
    let app_cert = policy.authenticate(None, Some("demo-client")).unwrap();
    assert_eq!(
        policy.role_of(&app_cert),
        Some(concoord::auth::Role::Client)
    );
    let issued = run.body(EVENT);
    assert_eq!(issued["reason"], "CertificateIssued");
    assert!(
        issued["note"]
            .as_str()
            .is_some_and(|n| n.contains("demo-server-tls") && n.contains("demo-client-tls")),
        "{issued}"
    );

    // The pods mount the certificate and the auth file; the probes show the admin token.
    let pod = &run.body(APPLY_STS)["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].to_string();
    assert!(
        args.contains("\"--tls-cert\",\"/etc/concoord/tls/tls.crt\""),
        "{args}"
    );
    assert!(
        args.contains("\"--auth-file\",\"/etc/concoord/auth/auth\""),
        "{args}"
    );
    let volumes = pod["volumes"].to_string();
    assert!(
        volumes.contains("\"secretName\":\"demo-server-tls\""),
        "{volumes}"
    );
    assert!(
        volumes.contains("\"secretName\":\"demo-auth\""),
        "{volumes}"
    );
    assert!(
        !volumes.contains("demo-ca"),
        "the CA key never reaches a pod"
    );
    let env = pod["containers"][0]["env"].to_string();
    assert!(env.contains("\"name\":\"CONCOORD_TOKEN\""), "{env}");
    assert!(env.contains("\"name\":\"demo-admin-token\""), "{env}");

    let status = &run.body(STATUS)["status"];
    let kinds: Vec<&str> = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ca", "server", "client"]);
    assert!(
        status["certificates"][1]["notAfter"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

/// A certificate close to its expiry is issued again by the same CA; the rest stays.
#[tokio::test]
async fn an_expiring_server_certificate_is_renewed_with_the_same_ca() {
    use crate::security::tls_secret;
    let names = ClusterNames::new("demo", NS);
    let mut secrets = current_secrets();
    let ca_secret_json = &secrets[&names.ca_secret()];
    let ca = concoord::pki::Pem {
        cert: secret_text(ca_secret_json, "ca.crt"),
        key: secret_text(ca_secret_json, "ca.key"),
    };
    let meta = |name: String| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        ..Default::default()
    };
    let soon = concoord::pki::issue(
        &ca,
        "demo",
        &crate::security::server_hosts(&names, &names.default_domain()),
        10,
        concoord::pki::CertKind::Replica,
    )
    .unwrap();
    secrets.insert(
        names.server_tls_secret(),
        secret_json(&tls_secret(
            meta(names.server_tls_secret()),
            &soon,
            &ca.cert,
        )),
    );
    let state = ApiState {
        cc: cluster(3, members_status(3, 0)),
        statefulset: Some(statefulset(3, "r1")),
        pods: pods(3, "r1"),
        claims: (0..3).collect(),
        secrets,
        ..ApiState::default()
    };
    let run = reconcile_once(state, group(&[0, 1, 2], &[], 0)).await;
    let lines = run.lines();
    assert_eq!(
        lines[..5],
        [
            GET_CA,
            GET_SERVER_TLS,
            APPLY_SERVER_TLS,
            GET_CLIENT_TLS,
            EVENT
        ]
    );
    assert!(!lines.contains(&APPLY_CA) && !lines.contains(&APPLY_CLIENT_TLS));
    let renewed = run.body(APPLY_SERVER_TLS);
    assert_eq!(secret_text(renewed, "ca.crt"), ca.cert);
    let info = concoord::pki::inspect(&secret_text(renewed, "tls.crt")).unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(info.not_after - now > 80 * 86_400);
    let event = run.body(EVENT);
    assert_eq!(event["reason"], "CertificateIssued");
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.contains("demo-server-tls (it expires in")),
        "{event}"
    );
}
