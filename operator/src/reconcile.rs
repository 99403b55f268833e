//! One reconcile of one ConCoordCluster: observe (API objects and the replicas' own
//! reports), plan one step, act (server-side apply of the owned objects, the step itself,
//! events, the status).

use crate::crd::{ConCoordCluster, ConCoordClusterStatus};
use crate::metrics::Metrics;
use crate::names::{ClusterNames, FINALIZER, MANAGER};
use crate::observe::{Seen, ask_replicas, ordinals_to_ask, summarize};
use crate::plan::{Step, WaitReason, plan};
use crate::render::{RenderError, RenderInput, Rendered, names_of, render};
use crate::replicas::Replicas;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub replicas: Arc<dyn Replicas>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// `--replica-image`: replaces spec.image wherever it equals the CRD's default, even
    /// when a user wrote the default explicitly (indistinguishable after defaulting).
    pub replica_image: Option<String>,
    /// `--route53-endpoint`: a Route53-compatible API instead of AWS (emulators, tests).
    pub route53_endpoint: Option<String>,
    /// `--cluster-domain`: the Kubernetes cluster's DNS domain, for member addresses.
    pub cluster_domain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{what} through {seeds}: {source}")]
    Replica {
        what: String,
        seeds: String,
        source: concoord::client::ClientError,
    },
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("Route53 cleanup: {0}")]
    Route53(String),
    #[error("certificates and tokens: {0}")]
    Security(#[from] crate::security::SecurityError),
}

/// Requeue soon while work is under way; rarely once converged (watches wake us anyway).
fn requeue(step: &Step) -> Action {
    match step {
        Step::Done => Action::requeue(Duration::from_secs(60)),
        Step::Wait(_) => Action::requeue(Duration::from_secs(5)),
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

pub async fn reconcile(
    cc: Arc<ConCoordCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(cc, &ctx).await;
    ctx.metrics.reconciled(started.elapsed(), result.is_ok());
    result
}

async fn reconcile_inner(
    cc: Arc<ConCoordCluster>,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let names = names_of(&cc, &ctx.cluster_domain)?;
    let guarded = cc.spec.route53.is_some() || cc.finalizers().iter().any(|f| f == FINALIZER);
    if !guarded {
        if cc.meta().deletion_timestamp.is_some() {
            // Owner references take the children with it.
            return Ok(Action::await_change());
        }
        return converge(&cc, &names, ctx).await;
    }
    let api: Api<ConCoordCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    finalizer(&api, FINALIZER, cc, |event| async {
        match event {
            Finalizer::Apply(cc) => converge(&cc, &names, ctx).await,
            Finalizer::Cleanup(cc) => {
                crate::route53::cleanup(&cc, &names, ctx).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

/// Observe, plan, act.
async fn converge(
    cc: &ConCoordCluster,
    names: &ClusterNames,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = &names.namespace;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let old_status = cc.status.clone().unwrap_or_default();

    // Certificates and tokens first: the pods mount them, and the operator needs them to
    // reach the replicas.
    let security = crate::security::ensure(cc, names, &ctx.client).await?;
    if !security.issued.is_empty() {
        publish(
            ctx,
            cc,
            EventType::Normal,
            "CertificateIssued",
            format!("issued {}", security.issued.join(", ")),
        )
        .await;
    }
    let replicas = ctx
        .replicas
        .clone()
        .with_credentials(security.creds.clone());
    let replicas = replicas.as_ref();

    // Observe.
    let sts = sts_api.get_opt(&names.statefulset()).await?;
    let pods = pod_api
        .list(&ListParams::default().labels(&names.selector_string()))
        .await?
        .items;
    let last_known = old_status.last_known();
    let ordinals = ordinals_to_ask(names, sts.as_ref(), &pods, &last_known);
    let reports = ask_replicas(names, &ordinals, replicas).await;
    let mut seen = summarize(
        names,
        old_status.bootstrapped,
        &last_known,
        sts.as_ref(),
        &pods,
        &reports,
    );
    if cc.spec.persistence.enabled {
        let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        seen.observed.claims = claim_api
            .list(&ListParams::default().labels(&names.selector_string()))
            .await?
            .items
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .filter_map(|n| names.ordinal_of_claim(n))
            .collect();
    }

    // Plan.
    let want = u32::try_from(cc.spec.replicas).unwrap_or(1).max(1);
    let step = plan(want, &seen.observed);
    tracing::info!(cluster = %names.name, namespace = %ns, ?step, "planned");
    ctx.metrics.step(&step);

    // Act: the owned objects first (the StatefulSet size is part of the step).
    let bootstrapped = seen.observed.bootstrapped || step == Step::FinishBootstrap;
    let statefulset_replicas = match step {
        Step::Bootstrap => 1,
        Step::GrowStatefulSet(n) | Step::ShrinkStatefulSet(n) => n,
        _ => seen
            .observed
            .statefulset_replicas
            .unwrap_or_else(|| last_known_size(&old_status, names, want)),
    };
    let mut spec = cc.clone();
    if let Some(image) = &ctx.replica_image
        && spec.spec.image == crate::crd::DEFAULT_IMAGE
    {
        spec.spec.image = image.clone();
    }
    let rendered = render(
        &spec,
        &RenderInput {
            statefulset_replicas,
            bootstrapped,
            cluster_domain: ctx.cluster_domain.clone(),
        },
    )?;
    apply_all(&ctx.client, names, &rendered).await?;
    act(cc, names, ctx, replicas, &step, &seen).await?;
    // User types once the group has a leader to define them through.
    let types = if bootstrapped && seen.leader.is_some() && !seen.seeds.is_empty() {
        Some(
            crate::objecttypes::sync(cc, ctx, replicas, &seen.seeds, &old_status.object_types)
                .await?,
        )
    } else {
        None
    };

    // Report.
    if old_status.leader.is_some() && seen.leader.is_some() && seen.leader != old_status.leader {
        publish(
            ctx,
            cc,
            EventType::Normal,
            "LeaderChanged",
            format!(
                "leader moved from {} to {}",
                old_status.leader.as_deref().unwrap_or("?"),
                seen.leader.as_deref().unwrap_or("?")
            ),
        )
        .await;
    }
    let mut status = status_of(
        cc,
        &old_status,
        &seen,
        &step,
        bootstrapped,
        statefulset_replicas,
    );
    if let Some(types) = types {
        types.report(ctx, cc, &old_status, &mut status).await;
    }
    status.certificates = security.certificates;
    let api: Api<ConCoordCluster> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        &names.name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(requeue(&step))
}

/// Without a StatefulSet (deleted by hand), recreate it at the size the members need.
fn last_known_size(status: &ConCoordClusterStatus, names: &ClusterNames, want: u32) -> u32 {
    if !status.bootstrapped {
        return 1;
    }
    status
        .last_known()
        .iter()
        .filter_map(|m| names.ordinal_of_pod(m))
        .map(|i| i + 1)
        .max()
        .unwrap_or(want)
}

async fn apply_one<K>(client: &kube::Client, ns: &str, obj: &K) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// Server-side apply of everything the cluster owns.
async fn apply_all(
    client: &kube::Client,
    names: &ClusterNames,
    r: &Rendered,
) -> Result<(), ReconcileError> {
    let ns = names.namespace.as_str();
    apply_one(client, ns, &r.service_account).await?;
    apply_one(client, ns, &r.configmap).await?;
    apply_one(client, ns, &r.peer_service).await?;
    apply_one(client, ns, &r.client_service).await?;
    match &r.dns_service {
        Some(dns) => apply_one(client, ns, dns).await?,
        None => {
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            delete_if_present(&api, &names.dns_service()).await?;
        }
    }
    apply_one(client, ns, &r.pdb).await?;
    match &r.network_policy {
        Some(policy) => apply_one(client, ns, policy).await?,
        None => {
            let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
            delete_if_present(&api, &names.network_policy()).await?;
        }
    }
    apply_one(client, ns, &r.statefulset).await?;
    Ok(())
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), ReconcileError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Performs the planned step (StatefulSet sizes were applied with the objects).
async fn act(
    cc: &ConCoordCluster,
    names: &ClusterNames,
    ctx: &Context,
    replicas: &dyn Replicas,
    step: &Step,
    seen: &Seen,
) -> Result<(), ReconcileError> {
    let seeds = &seen.seeds;
    let replica_error = |what: String| {
        let seeds = seeds.join(", ");
        move |source| ReconcileError::Replica {
            what,
            seeds,
            source,
        }
    };
    match step {
        Step::FinishBootstrap => {
            for o in &cc.spec.objects {
                replicas
                    .ensure_object(seeds, &o.name, &o.type_name, &o.args)
                    .await
                    .map_err(replica_error(format!("creating object {}", o.name)))?;
            }
            publish(
                ctx,
                cc,
                EventType::Normal,
                "Bootstrapped",
                format!("{} founded the group", names.pod(0)),
            )
            .await;
        }
        Step::AddMember(i) => {
            let view = replicas
                .add_member(seeds, &names.member_address(*i))
                .await
                .map_err(replica_error(format!("adding member {}", names.pod(*i))))?;
            publish(
                ctx,
                cc,
                EventType::Normal,
                "MemberAdded",
                format!(
                    "{} joined the view as a learner (view {view})",
                    names.pod(*i)
                ),
            )
            .await;
        }
        Step::RemoveMember(i) => {
            let view = replicas
                .remove_member(seeds, &names.member_address(*i))
                .await
                .map_err(replica_error(format!("removing member {}", names.pod(*i))))?;
            publish(
                ctx,
                cc,
                EventType::Normal,
                "MemberRemoved",
                format!("{} left the view (view {view})", names.pod(*i)),
            )
            .await;
        }
        Step::RemoveStranger(id) => {
            let view = replicas
                .remove_member(seeds, &id.to_string())
                .await
                .map_err(replica_error(format!("removing member {id}")))?;
            publish(
                ctx,
                cc,
                EventType::Normal,
                "MemberRemoved",
                format!("member {id}, not a pod of this cluster, left the view (view {view})"),
            )
            .await;
        }
        Step::DeleteClaim(i) => {
            let api: Api<PersistentVolumeClaim> =
                Api::namespaced(ctx.client.clone(), &names.namespace);
            delete_if_present(&api, &names.claim(*i)).await?;
            publish(
                ctx,
                cc,
                EventType::Normal,
                "ClaimDeleted",
                format!(
                    "deleted {}: {} left the view and was scaled away",
                    names.claim(*i),
                    names.pod(*i)
                ),
            )
            .await;
        }
        Step::RollPod(i) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            delete_if_present(&api, &names.pod(*i)).await?;
            publish(
                ctx,
                cc,
                EventType::Normal,
                "PodRolled",
                format!("restarted {} with the new revision", names.pod(*i)),
            )
            .await;
        }
        Step::ReplacePod(i) => {
            if cc.spec.persistence.enabled {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(ctx.client.clone(), &names.namespace);
                delete_if_present(&api, &names.claim(*i)).await?;
            }
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            delete_if_present(&api, &names.pod(*i)).await?;
            publish(
                ctx,
                cc,
                EventType::Warning,
                "MemberReplaced",
                format!(
                    "{}'s replica was removed or halted; it restarts empty and rejoins",
                    names.pod(*i)
                ),
            )
            .await;
        }
        Step::Wait(reason @ WaitReason::UpgradeBlocked(_)) => {
            publish(
                ctx,
                cc,
                EventType::Warning,
                "UpgradeBlocked",
                reason.to_string(),
            )
            .await;
        }
        Step::Bootstrap
        | Step::GrowStatefulSet(_)
        | Step::ShrinkStatefulSet(_)
        | Step::Wait(_)
        | Step::Done => {}
    }
    Ok(())
}

/// Events are best effort: a failure is logged, never fails the reconcile.
pub(crate) async fn publish(
    ctx: &Context,
    cc: &ConCoordCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cc.object_ref(&())).await {
        tracing::warn!("cannot publish event {reason}: {e}");
    }
}

fn condition(old: &[Condition], type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status flips.
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: None,
    }
}

fn step_reason(step: &Step) -> &'static str {
    match step {
        Step::Bootstrap => "Bootstrapping",
        Step::FinishBootstrap => "Bootstrapped",
        Step::AddMember(_) | Step::GrowStatefulSet(_) => "ScalingUp",
        Step::RemoveMember(_)
        | Step::RemoveStranger(_)
        | Step::ShrinkStatefulSet(_)
        | Step::DeleteClaim(_) => "ScalingDown",
        Step::RollPod(_) => "RollingUpdate",
        Step::ReplacePod(_) => "ReplacingMember",
        Step::Wait(_) => "Waiting",
        Step::Done => "Converged",
    }
}

pub fn status_of(
    cc: &ConCoordCluster,
    old: &ConCoordClusterStatus,
    seen: &Seen,
    step: &Step,
    bootstrapped: bool,
    statefulset_replicas: u32,
) -> ConCoordClusterStatus {
    let voters: Vec<_> = seen.members.iter().filter(|m| !m.learner).collect();
    let healthy_voters = voters.iter().filter(|m| m.healthy).count();
    let quorum = voters.len() / 2 + 1;
    let available = seen.leader.is_some() && !voters.is_empty() && healthy_voters >= quorum;
    let unhealthy: Vec<&str> = seen
        .members
        .iter()
        .filter(|m| !m.healthy)
        .map(|m| m.name.as_str())
        .collect();
    let pod = |i: &u32| format!("{}-{i}", cc.metadata.name.as_deref().unwrap_or("?"));
    let progress = match step {
        Step::Bootstrap => format!("starting {} to found the group", pod(&0)),
        Step::FinishBootstrap => "recording the founded group and creating its objects".into(),
        Step::AddMember(i) => format!("adding {} to the view", pod(i)),
        Step::GrowStatefulSet(n) => format!("growing the StatefulSet to {n} pods"),
        Step::RemoveMember(i) => format!("removing {} from the view", pod(i)),
        Step::RemoveStranger(id) => {
            format!("removing member {id}, which is no pod of this cluster")
        }
        Step::ShrinkStatefulSet(n) => format!("shrinking the StatefulSet to {n} pods"),
        Step::DeleteClaim(i) => format!("deleting the volume claim of {}", pod(i)),
        Step::RollPod(i) => format!("restarting {} with the new revision", pod(i)),
        Step::ReplacePod(i) => format!("replacing {} with an empty replica", pod(i)),
        Step::Wait(reason) => reason.to_string(),
        Step::Done => "all replicas are current voting members".to_string(),
    };
    let conditions = vec![
        condition(
            &old.conditions,
            "Available",
            available,
            if available {
                "QuorumHealthy"
            } else {
                "NoQuorum"
            },
            format!(
                "{healthy_voters} of {} voting members healthy, leader {}",
                voters.len(),
                seen.leader.as_deref().unwrap_or("none")
            ),
        ),
        condition(
            &old.conditions,
            "Progressing",
            *step != Step::Done,
            step_reason(step),
            progress,
        ),
        condition(
            &old.conditions,
            "Degraded",
            !unhealthy.is_empty(),
            if unhealthy.is_empty() {
                "AllHealthy"
            } else {
                "MembersUnhealthy"
            },
            if unhealthy.is_empty() {
                "every member answers and is caught up".into()
            } else {
                format!("unhealthy: {}", unhealthy.join(", "))
            },
        ),
    ];
    ConCoordClusterStatus {
        observed_generation: cc.metadata.generation,
        replicas: i32::try_from(statefulset_replicas).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(seen.ready_pods).unwrap_or(i32::MAX),
        members: seen.members.clone(),
        last_known_members: if seen.observed.membership.is_some() {
            seen.members.iter().map(|m| m.name.clone()).collect()
        } else {
            old.last_known()
        },
        leader: seen.leader.clone(),
        view: seen.view.and_then(|v| i64::try_from(v).ok()),
        bootstrapped,
        conditions,
        object_types: old.object_types.clone(),
        certificates: old.certificates.clone(),
    }
}
