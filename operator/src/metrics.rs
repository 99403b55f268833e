//! Prometheus metrics of the operator, and the HTTP server for `/metrics`, `/healthz` and
//! `/readyz`.

use crate::plan::Step;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    duration: Histogram,
    steps: Family<StepLabel, Counter>,
    leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("concoord_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok, error)",
            reconciles.clone(),
        );
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let steps = Family::<StepLabel, Counter>::default();
        registry.register(
            "steps",
            "Steps planned, by kind (bootstrap, add_member, roll_pod, wait, ...)",
            steps.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this operator instance runs the controller (holds the lease)",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            duration,
            steps,
            leader,
            ready: AtomicBool::new(false),
        }
    }

    pub fn reconciled(&self, took: Duration, ok: bool) {
        let result = if ok { "ok" } else { "error" }.to_string();
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn step(&self, step: &Step) {
        let step = match step {
            Step::Bootstrap => "bootstrap",
            Step::FinishBootstrap => "finish_bootstrap",
            Step::AddMember(_) => "add_member",
            Step::GrowStatefulSet(_) => "grow_statefulset",
            Step::RemoveMember(_) => "remove_member",
            Step::RemoveStranger(_) => "remove_stranger",
            Step::ShrinkStatefulSet(_) => "shrink_statefulset",
            Step::DeleteClaim(_) => "delete_claim",
            Step::RollPod(_) => "roll_pod",
            Step::ReplacePod(_) => "replace_pod",
            Step::Wait(_) => "wait",
            Step::Done => "done",
        }
        .to_string();
        self.steps.get_or_create(&StepLabel { step }).inc();
    }

    /// This instance runs the controller (holds the lease, or runs without election).
    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Connected to the API server and leading or standing by: ready for /readyz.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// `/metrics`, `/healthz` (the process serves) and `/readyz` (the controller runs).
pub fn router(m: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(m)
}
