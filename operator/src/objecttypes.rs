//! `spec.objectTypes`: user-defined object types whose Python source is a ConfigMap key.
//! Each is defined in the group through consensus (a `DefineType` with replace) once the
//! group has a leader, and again whenever the source changes; the replicas keep the code
//! in their snapshots, so the ConfigMap is read only by the operator. Code the replicas
//! refuse (a syntax error, no such class) changes nothing in the group and is reported in
//! the Degraded condition and an event.

use crate::crd::{ConCoordCluster, ConCoordClusterStatus, ObjectTypeStatus};
use crate::reconcile::{Context, ReconcileError, publish};
use crate::replicas::Replicas;
use concoord::client::ClientError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;

/// What one pass over spec.objectTypes found.
#[derive(Debug, Default, PartialEq)]
pub struct TypeSync {
    /// The types the group runs for the spec's entries, in spec order.
    pub loaded: Vec<ObjectTypeStatus>,
    /// One line per entry that could not be defined.
    pub errors: Vec<String>,
    /// One line per type (re)defined by this pass.
    pub defined: Vec<String>,
}

/// Defines every type of the spec whose source the group does not run yet.
pub async fn sync(
    cc: &ConCoordCluster,
    ctx: &Context,
    replicas: &dyn Replicas,
    seeds: &[String],
    old: &[ObjectTypeStatus],
) -> Result<TypeSync, ReconcileError> {
    let mut out = TypeSync::default();
    if cc.spec.object_types.is_empty() {
        return Ok(out);
    }
    let replica_error = |what: String| {
        let seeds = seeds.join(", ");
        move |source| ReconcileError::Replica {
            what,
            seeds,
            source,
        }
    };
    let ns = cc.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let running = replicas
        .list_types(seeds)
        .await
        .map_err(replica_error("listing the object types".into()))?;
    for spec in &cc.spec.object_types {
        let from = spec.source_name();
        let previous = old.iter().find(|o| o.source == from);
        let source = api
            .get_opt(&spec.config_map_ref.name)
            .await?
            .and_then(|cm| cm.data)
            .and_then(|data| data.get(&spec.config_map_ref.key).cloned());
        let Some(source) = source else {
            out.errors.push(format!("{from}: no such ConfigMap or key"));
            out.loaded.extend(previous.cloned());
            continue;
        };
        let sha256 = concoord::object::sandbox::sha256_hex(source.as_bytes());
        // Up to date when the group runs this very code under the name defined last time.
        if let Some(p) = previous
            && running
                .iter()
                .any(|t| t.name == p.name && t.sha256 == sha256)
        {
            out.loaded.push(ObjectTypeStatus {
                sha256,
                ..p.clone()
            });
            continue;
        }
        let class = spec.class_name.clone().unwrap_or_default();
        match replicas
            .define_type(seeds, &spec.module_name(), &class, &source)
            .await
        {
            Ok((name, sha256)) => {
                out.defined
                    .push(format!("{name} from {from} (sha256 {sha256})"));
                out.loaded.push(ObjectTypeStatus {
                    name,
                    sha256,
                    source: from,
                });
            }
            Err(ClientError::Remote { kind, message }) => {
                out.errors.push(format!("{from}: {kind}: {message}"));
                out.loaded.extend(previous.cloned());
            }
            Err(e) => return Err(replica_error(format!("defining the type from {from}"))(e)),
        }
    }
    Ok(out)
}

/// Degraded when a type was refused (with the refusal), as when members are unhealthy.
pub const REJECTED: &str = "ObjectTypeRejected";

impl TypeSync {
    /// Writes the pass into the status (types, the Degraded condition) and publishes an
    /// event per definition and per new refusal.
    pub async fn report(
        self,
        ctx: &Context,
        cc: &ConCoordCluster,
        old: &ConCoordClusterStatus,
        status: &mut ConCoordClusterStatus,
    ) {
        for line in &self.defined {
            publish(
                ctx,
                cc,
                EventType::Normal,
                "ObjectTypeDefined",
                line.clone(),
            )
            .await;
        }
        let message = self.errors.join("; ");
        let already_reported = old
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.reason == REJECTED && c.message.contains(&message));
        if !self.errors.is_empty() && !already_reported {
            publish(ctx, cc, EventType::Warning, REJECTED, message.clone()).await;
        }
        status.object_types = self.loaded;
        if self.errors.is_empty() {
            return;
        }
        if let Some(degraded) = status.conditions.iter_mut().find(|c| c.type_ == "Degraded") {
            let members = (degraded.status == "True").then(|| degraded.message.clone());
            if degraded.status != "True" {
                degraded.status = "True".into();
                degraded.last_transition_time =
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    );
            }
            // Keep the time of an earlier refusal that is still in force.
            if let Some(before) = old
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True")
            {
                degraded.last_transition_time = before.last_transition_time.clone();
            }
            degraded.reason = REJECTED.into();
            degraded.message = match members {
                Some(m) => format!("{message}; {m}"),
                None => message,
            };
        }
    }
}
