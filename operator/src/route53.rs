//! Cleanup of a deleted cluster's Route53 records (the only outside state, hence the only
//! finalizer): the records the replicas own in the zone are deleted with the same
//! ownership rules the replicas' sync uses.

use crate::crd::ConCoordCluster;
use crate::names::ClusterNames;
use crate::reconcile::{Context, ReconcileError, publish};
use crate::render::domain;
use concoord::dns::route53::api::Route53;
use concoord::dns::route53::credentials::Stored;
use concoord::dns::route53::{DEFAULT_OWNER, plan};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::events::EventType;

/// Deletes the records of `cc`'s domain that the replicas wrote to its hosted zone.
pub async fn cleanup(
    cc: &ConCoordCluster,
    names: &ClusterNames,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let Some(r53) = &cc.spec.route53 else {
        return Ok(());
    };
    let stored = credentials(cc, names, ctx).await?;
    delete_records(
        &r53.zone_id,
        &domain(cc, names),
        stored,
        ctx.route53_endpoint.as_deref(),
    )
    .await
    .map(drop)
    .map_err(ReconcileError::Route53)
}

/// The credentials for the cleanup: the cluster's Secret, or the operator's own ambient
/// chain (environment, its service account's role, instance profile) without one. A
/// Secret already deleted (e.g. with its namespace) falls back to the ambient chain with
/// a Warning event, so the finalizer does not hold the cluster forever.
pub(crate) async fn credentials(
    cc: &ConCoordCluster,
    names: &ClusterNames,
    ctx: &Context,
) -> Result<Stored, ReconcileError> {
    let Some(s) = cc
        .spec
        .route53
        .as_ref()
        .and_then(|r| r.credentials_secret.as_ref())
    else {
        return Ok(Stored::default());
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let Some(secret) = api.get_opt(&s.name).await? else {
        publish(
            ctx,
            cc,
            EventType::Warning,
            "CredentialsSecretMissing",
            format!(
                "Secret {} is gone; deleting the Route53 records with the operator's own credentials",
                s.name
            ),
        )
        .await;
        return Ok(Stored::default());
    };
    let value = |key: &str| -> Result<String, ReconcileError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| {
                ReconcileError::Route53(format!("Secret {} has no key {key}", s.name))
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| {
            ReconcileError::Route53(format!("Secret {} key {key} is not UTF-8", s.name))
        })
    };
    Ok(Stored {
        key_id: Some(value(&s.access_key_id_key)?),
        secret: Some(value(&s.secret_access_key_key)?),
    })
}

/// Deletes the records of `domain` owned by the replicas (owner `concoord`) from `zone`;
/// records of anyone else stay. Returns how many changes were sent.
pub async fn delete_records(
    zone: &str,
    domain: &str,
    credentials: Stored,
    endpoint: Option<&str>,
) -> Result<usize, String> {
    let api = Route53::connect(credentials, endpoint).await;
    let actual = api
        .list(zone)
        .await
        .map_err(|e| format!("listing zone {zone}: {e}"))?;
    let planned =
        plan::plan(domain, DEFAULT_OWNER, &[], &actual).map_err(|e| format!("zone {zone}: {e}"))?;
    if planned.changes.is_empty() {
        return Ok(0);
    }
    api.apply(zone, &planned.changes, "concoord-operator: cluster deleted")
        .await
        .map_err(|e| format!("deleting {domain} records in {zone}: {e}"))?;
    tracing::info!(
        "deleted {} Route53 record sets of {domain} in zone {zone}",
        planned.changes.len()
    );
    Ok(planned.changes.len())
}
