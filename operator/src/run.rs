//! `concoord-operator run`: the controller (watching ConCoordClusters and what they own),
//! the metrics/health server, optional leader election over a Lease, and a graceful stop
//! on SIGTERM or Ctrl-C.

use crate::crd::ConCoordCluster;
use crate::metrics::{Metrics, router};
use crate::names::MANAGER;
use crate::reconcile::{Context, ReconcileError, reconcile};
use crate::replicas::NetworkReplicas;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Name of the Lease the operator replicas compete for.
pub const LEASE_NAME: &str = "concoord-operator";

pub struct RunOptions {
    pub metrics_addr: SocketAddr,
    pub leader_elect: bool,
    pub lease_namespace: String,
    pub namespace: Option<String>,
    pub replica_image: Option<String>,
    pub route53_endpoint: Option<String>,
    pub cluster_domain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {}", with_causes(.0))]
    Client(#[source] kube::Error),
    #[error(
        "cannot list ConCoordClusters (is the CRD installed? `concoord-operator crd | kubectl apply -f -`): {0}"
    )]
    NoCrd(#[source] kube::Error),
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election with Lease {namespace}/{LEASE_NAME}: {reason}")]
    Lease { namespace: String, reason: String },
    #[error("lost the leader Lease; exiting so another instance takes over")]
    LostLease,
}

/// `error: cause: cause ...` on one line: kube's own messages ("ServiceError: client error
/// (Connect)") leave out the part that says what to fix (an unknown CA, a refused port).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

pub fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: `kubectl logs` and log collectors get plain text.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop signal received; finishing the reconciles under way");
}

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: opts.metrics_addr,
            source,
        })?;
    // The bound address, so `--metrics-addr 127.0.0.1:0` tells where it went.
    match listener.local_addr() {
        Ok(bound) => tracing::info!("serving /metrics, /healthz and /readyz on {bound}"),
        Err(e) => tracing::warn!("serving /metrics on {}: {e}", opts.metrics_addr),
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let server = axum::serve(listener, router(metrics.clone())).with_graceful_shutdown(stopped());
    let server = tokio::spawn(server.into_future());
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop_tx.send(true);
    });
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("{MANAGER}-{}", std::process::id()));

    let result = if opts.leader_elect {
        lead_then_control(&client, &opts, &metrics, &identity, stopped).await
    } else {
        metrics.set_ready(true);
        metrics.set_leading(true);
        // A JoinHandle is Sync, as the controller's shutdown future must be.
        let stop = tokio::spawn(stopped());
        let until = async move {
            let _ = stop.await;
        };
        control(client.clone(), &opts, metrics.clone(), &identity, until).await
    };
    server.abort();
    result
}

/// Waits for the Lease, runs the controller while holding it, gives it up on stop.
async fn lead_then_control<F, Fut>(
    client: &kube::Client,
    opts: &RunOptions,
    metrics: &Arc<Metrics>,
    identity: &str,
    stopped: F,
) -> Result<(), RunError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let lease_error = |e: kube_lease_manager::LeaseManagerError| RunError::Lease {
        namespace: opts.lease_namespace.clone(),
        reason: e.to_string(),
    };
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(&opts.lease_namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .with_field_manager(MANAGER)
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, task) = manager.watch().await;
    metrics.set_ready(true);
    tracing::info!(
        "waiting for Lease {}/{LEASE_NAME} as {identity}",
        opts.lease_namespace
    );
    tokio::select! {
        got = leading.wait_for(|l| *l) => {
            if got.is_err() {
                return Err(RunError::Lease {
                    namespace: opts.lease_namespace.clone(),
                    reason: "the lease task ended".into(),
                });
            }
        }
        _ = stopped() => return Ok(()),
    }
    tracing::info!(
        "holding Lease {}/{LEASE_NAME}; starting the controller",
        opts.lease_namespace
    );
    metrics.set_leading(true);
    // Losing the Lease aborts the in-flight reconciles instead of draining them: a
    // membership change may take up to CHANGE_TIMEOUT (20 s), longer than the 15 s
    // Lease, so draining could let two operators change one group at once. Dropping the
    // controller future drops its reconciles at their next await point. A clean stop
    // (SIGTERM) still drains, as it gives the Lease up only afterwards.
    let mut watch = leading.clone();
    let lost = async move {
        let _ = watch.wait_for(|l| !*l).await;
    };
    let stop = stopped();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    // Waits for the stop in a task; the controller only needs a Sync future.
    let stopper = tokio::spawn(async move {
        stop.await;
        let _ = done_tx.send(());
    });
    let until = async move {
        let _ = done_rx.await;
    };
    let controlled = tokio::select! {
        result = control(client.clone(), opts, metrics.clone(), identity, until) => result,
        () = lost => Err(RunError::LostLease),
    };
    stopper.abort();
    metrics.set_leading(false);
    // Dropping the receivers makes the lease task release the Lease.
    drop(leading);
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), task).await {
        tracing::warn!("lease task failed: {e}");
    }
    controlled
}

fn error_policy(cc: Arc<ConCoordCluster>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        cluster = %cc.name_any(),
        namespace = cc.namespace().unwrap_or_default(),
        "reconcile failed: {error}"
    );
    Action::requeue(Duration::from_secs(10))
}

/// The controller, until `until` resolves.
async fn control(
    client: kube::Client,
    opts: &RunOptions,
    metrics: Arc<Metrics>,
    identity: &str,
    until: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RunError> {
    fn api<K>(client: &kube::Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = ()>,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let clusters: Api<ConCoordCluster> = api(&client, &opts.namespace);
    clusters
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| match e {
            // Only the API server saying "no such resource" means the CRD is missing; a
            // connection or TLS failure must not send the user looking for it.
            kube::Error::Api(status) if status.code == 404 => {
                RunError::NoCrd(kube::Error::Api(status))
            }
            other => RunError::Client(other),
        })?;
    let ours = watcher::Config::default().labels("app.kubernetes.io/managed-by=concoord-operator");
    let pods = watcher::Config::default().labels("app.kubernetes.io/name=concoord");
    let ctx = Arc::new(Context {
        client: client.clone(),
        replicas: Arc::new(NetworkReplicas::default()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(identity.to_string()),
            },
        ),
        metrics,
        replica_image: opts.replica_image.clone(),
        route53_endpoint: opts.route53_endpoint.clone(),
        cluster_domain: opts.cluster_domain.clone(),
    });
    let controller = Controller::new(clusters, watcher::Config::default().any_semantic());
    // A changed ConfigMap of spec.objectTypes re-defines its type in every cluster of its
    // namespace that names it.
    let store = controller.store();
    controller
        .watches(
            api::<ConfigMap>(&client, &opts.namespace),
            watcher::Config::default(),
            move |cm| {
                let ns = cm.namespace();
                let name = cm.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|cc| {
                        cc.namespace() == ns
                            && cc
                                .spec
                                .object_types
                                .iter()
                                .any(|t| t.config_map_ref.name == name)
                    })
                    .map(|cc| ObjectRef::from_obj(cc.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .owns(api::<StatefulSet>(&client, &opts.namespace), ours.clone())
        .owns(api::<Service>(&client, &opts.namespace), ours.clone())
        .owns(api::<ConfigMap>(&client, &opts.namespace), ours.clone())
        .owns(
            api::<PodDisruptionBudget>(&client, &opts.namespace),
            ours.clone(),
        )
        .owns(api::<ServiceAccount>(&client, &opts.namespace), ours)
        // Pod readiness moves rolling updates and scale-ups on without waiting for a requeue.
        .watches(api::<Pod>(&client, &opts.namespace), pods, |pod| {
            let ns = pod.namespace()?;
            let name = pod.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::<ConCoordCluster>::new(&name).within(&ns))
        })
        .graceful_shutdown_on(until)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!("reconciled {obj}"),
                Err(e) => tracing::debug!("controller: {e}"),
            }
        })
        .await;
    Ok(())
}
