//! Pure builders of the objects a cluster owns: StatefulSet, the peer, client and DNS
//! Services, the bootstrap ConfigMap, the PodDisruptionBudget, the ServiceAccount and the
//! NetworkPolicy. (The Secrets are `security`'s.)
//! Nothing here talks to the API server, so builders are tested from YAML fixtures.

use crate::crd::ConCoordCluster;
use crate::names::{
    ClusterNames, DATA_DIR, DATA_VOLUME, DNS_CONTAINER_PORT, FOUND_IF_KEY, REPLICA_PORT,
};
use crate::security::{
    AUTH_DIR, AUTH_KEY, CA_CRT, TLS_CRT, TLS_DIR, TLS_KEY, TOKEN_KEY, pod_security,
};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapKeySelector, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The non-root user of the images (distroless "nonroot").
pub const RUN_AS_USER: i64 = 65532;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("ConCoordCluster has no {0}; it must come from the API server")]
    MissingMetadata(&'static str),
}

/// Everything a cluster owns, rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub service_account: ServiceAccount,
    pub configmap: ConfigMap,
    pub peer_service: Service,
    pub client_service: Service,
    /// None when `spec.dns.enabled` is false.
    pub dns_service: Option<Service>,
    pub pdb: PodDisruptionBudget,
    pub statefulset: StatefulSet,
    /// None when `spec.networkPolicy.enabled` is false.
    pub network_policy: Option<NetworkPolicy>,
}

/// The inputs of rendering besides the resource itself.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderInput {
    /// Pods the StatefulSet should have (the operator changes this one step at a time).
    pub statefulset_replicas: u32,
    /// Once the group exists, no pod may found it again.
    pub bootstrapped: bool,
    /// The Kubernetes cluster's DNS domain (`--cluster-domain`).
    pub cluster_domain: String,
}

/// The names of a cluster as it is stored, in a Kubernetes cluster with this DNS domain.
pub fn names_of(cc: &ConCoordCluster, cluster_domain: &str) -> Result<ClusterNames, RenderError> {
    let ns = cc
        .namespace()
        .ok_or(RenderError::MissingMetadata("namespace"))?;
    Ok(ClusterNames::in_domain(&cc.name_any(), &ns, cluster_domain))
}

/// The metadata of an object the cluster owns: its namespace, its labels and the cluster as
/// controlling owner (so it goes when the cluster goes), under `name`.
pub fn owned_meta(
    cc: &ConCoordCluster,
    names: &ClusterNames,
) -> Result<impl Fn(String) -> ObjectMeta, RenderError> {
    let owner = cc
        .controller_owner_ref(&())
        .ok_or(RenderError::MissingMetadata("uid"))?;
    let namespace = names.namespace.clone();
    let labels = names.labels();
    Ok(move |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    })
}

pub fn render(cc: &ConCoordCluster, input: &RenderInput) -> Result<Rendered, RenderError> {
    let names = names_of(cc, &input.cluster_domain)?;
    let meta = owned_meta(cc, &names)?;
    Ok(Rendered {
        service_account: service_account(cc, meta(names.service_account())),
        configmap: configmap(&names, input, meta(names.bootstrap_configmap())),
        peer_service: peer_service(&names, meta(names.peer_service())),
        client_service: client_service(&names, meta(names.client_service())),
        dns_service: cc
            .spec
            .dns
            .enabled
            .then(|| dns_service(cc, &names, meta(names.dns_service()))),
        pdb: pdb(&names, meta(names.pdb())),
        statefulset: statefulset(cc, &names, input, meta(names.statefulset())),
        network_policy: cc
            .spec
            .network_policy
            .enabled
            .then(|| network_policy(cc, &names, meta(names.network_policy()))),
    })
}

fn service_account(cc: &ConCoordCluster, mut meta: ObjectMeta) -> ServiceAccount {
    if let Some(role) = cc.spec.route53.as_ref().and_then(|r| r.role_arn.clone()) {
        meta.annotations = Some(BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_string(),
            role,
        )]));
    }
    ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// `found-if` names pod 0 until the group exists, then nobody.
fn configmap(names: &ClusterNames, input: &RenderInput, meta: ObjectMeta) -> ConfigMap {
    let found_if = if input.bootstrapped {
        String::new()
    } else {
        names.pod(0)
    };
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(FOUND_IF_KEY.to_string(), found_if)])),
        ..ConfigMap::default()
    }
}

fn tcp(name: &str, port: i32, target: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Headless, listing pods before they are ready: peers must reach a joining replica.
fn peer_service(names: &ClusterNames, meta: ObjectMeta) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector()),
            ports: Some(vec![tcp("concoord", REPLICA_PORT, REPLICA_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// For clients: ready replicas only.
fn client_service(names: &ClusterNames, meta: ObjectMeta) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names.selector()),
            ports: Some(vec![tcp("concoord", REPLICA_PORT, REPLICA_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn dns_service(cc: &ConCoordCluster, names: &ClusterNames, meta: ObjectMeta) -> Service {
    let port = cc.spec.dns.port;
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names.selector()),
            ports: Some(vec![
                ServicePort {
                    protocol: Some("UDP".into()),
                    ..tcp("dns-udp", port, DNS_CONTAINER_PORT)
                },
                tcp("dns-tcp", port, DNS_CONTAINER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn pdb(names: &ClusterNames, meta: ObjectMeta) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The replica's domain: `spec.domain` or `<name>.<namespace>.concoord`.
pub fn domain(cc: &ConCoordCluster, names: &ClusterNames) -> String {
    cc.spec
        .domain
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| names.default_domain())
}

/// `/concoord replica ...` as the interface fixes it; `$(VAR)` is expanded by the kubelet.
pub fn replica_args(cc: &ConCoordCluster, names: &ClusterNames) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "replica".into(),
        "-a".into(),
        format!("$(POD_NAME).{}", names.peer_domain()),
        "-p".into(),
        REPLICA_PORT.to_string(),
        "--advertise-ip".into(),
        "$(POD_IP)".into(),
        "-b".into(),
        format!("{}:{REPLICA_PORT}", names.peer_domain()),
        "-w".into(),
        "--data-dir".into(),
        DATA_DIR.into(),
    ];
    if cc.spec.dns.enabled || cc.spec.route53.is_some() {
        args.extend([
            "-n".into(),
            domain(cc, names),
            "--dns-addr".into(),
            "0.0.0.0".into(),
            "--dns-port".into(),
            DNS_CONTAINER_PORT.to_string(),
        ]);
    }
    if let Some(r53) = &cc.spec.route53 {
        args.extend(["-r".into(), "--route53-zone-id".into(), r53.zone_id.clone()]);
    }
    let security = pod_security(cc, names);
    if security.tls_secret.is_some() {
        args.extend([
            "--tls-cert".into(),
            format!("{TLS_DIR}/{TLS_CRT}"),
            "--tls-key".into(),
            format!("{TLS_DIR}/{TLS_KEY}"),
            "--tls-ca".into(),
            format!("{TLS_DIR}/{CA_CRT}"),
        ]);
    }
    if security.auth.is_some() {
        args.extend(["--auth-file".into(), format!("{AUTH_DIR}/{AUTH_KEY}")]);
    }
    args
}

/// The replicas' port is open to the cluster's own pods (peers), the operator and the
/// clients the spec selects (the same namespace by default); DNS is open to all.
fn network_policy(cc: &ConCoordCluster, names: &ClusterNames, meta: ObjectMeta) -> NetworkPolicy {
    let own_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(names.selector()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "concoord".to_string(),
                ),
                (
                    "app.kubernetes.io/component".to_string(),
                    "operator".to_string(),
                ),
            ])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let clients = if cc.spec.network_policy.clients.is_empty() {
        vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]
    } else {
        cc.spec.network_policy.clients.clone()
    };
    let port = |protocol: &str, port: i32| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(port)),
        ..NetworkPolicyPort::default()
    };
    let mut from = vec![own_pods, operator];
    from.extend(clients);
    NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(from),
                    ports: Some(vec![port("TCP", REPLICA_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![
                        port("UDP", DNS_CONTAINER_PORT),
                        port("TCP", DNS_CONTAINER_PORT),
                    ]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn replica_env(cc: &ConCoordCluster, names: &ClusterNames) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        EnvVar {
            name: "CONCOORD_FOUND_IF".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: names.bootstrap_configmap(),
                    key: FOUND_IF_KEY.into(),
                    optional: Some(true),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ];
    if let Some(secret) = cc
        .spec
        .route53
        .as_ref()
        .and_then(|r| r.credentials_secret.as_ref())
    {
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", &secret.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", &secret.secret_access_key_key),
        ] {
            env.push(secret_env(var, &secret.name, key));
        }
    }
    // The probes (`concoord probe`) are clients: the CA to check the replica, and the
    // admin token, which the replica also shows its peers when there is no TLS.
    let security = pod_security(cc, names);
    if security.tls_secret.is_some() {
        env.push(EnvVar {
            name: "CONCOORD_CA".into(),
            value: Some(format!("{TLS_DIR}/{CA_CRT}")),
            ..EnvVar::default()
        });
    }
    if let Some(auth) = &security.auth {
        env.push(secret_env(
            "CONCOORD_TOKEN",
            &auth.admin_token_secret,
            TOKEN_KEY,
        ));
    }
    env
}

/// The Secret volumes and their mounts: the replicas' certificate and the auth file, read
/// by the replica's group only.
fn security_volumes(cc: &ConCoordCluster, names: &ClusterNames) -> (Vec<Volume>, Vec<VolumeMount>) {
    let security = pod_security(cc, names);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut add = |name: &str, secret: &str, dir: &str| {
        volumes.push(Volume {
            name: name.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: name.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    };
    if let Some(secret) = &security.tls_secret {
        add("tls", secret, TLS_DIR);
    }
    if let Some(auth) = &security.auth {
        add("auth", &auth.file_secret, AUTH_DIR);
    }
    (volumes, mounts)
}

fn exec_probe(kind: &str, period: i32, failures: i32, initial: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["/concoord".into(), "probe".into(), kind.into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        initial_delay_seconds: Some(initial),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

/// Spread replicas over nodes when possible (a preference, so small clusters still run).
fn default_affinity(names: &ClusterNames) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names.selector()),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

fn statefulset(
    cc: &ConCoordCluster,
    names: &ClusterNames,
    input: &RenderInput,
    meta: ObjectMeta,
) -> StatefulSet {
    let spec = &cc.spec;
    let tpl = &spec.pod_template;
    let (secret_volumes, secret_mounts) = security_volumes(cc, names);
    let mut labels = tpl.labels.clone();
    labels.extend(names.labels());
    let container = Container {
        name: "concoord".into(),
        image: Some(format!("{}:{}", spec.image, spec.version)),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(vec!["/concoord".into()]),
        args: Some(replica_args(cc, names)),
        env: Some(replica_env(cc, names)),
        ports: Some(vec![
            container_port("concoord", REPLICA_PORT, "TCP"),
            container_port("dns-udp", DNS_CONTAINER_PORT, "UDP"),
            container_port("dns-tcp", DNS_CONTAINER_PORT, "TCP"),
        ]),
        readiness_probe: Some(exec_probe("ready", 5, 3, 2)),
        liveness_probe: Some(exec_probe("live", 10, 6, 10)),
        resources: spec.resources.clone(),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            })
            .chain(secret_mounts)
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let (volumes, claims) = if spec.persistence.enabled {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.into()),
                labels: Some(names.labels()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: spec.persistence.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(spec.persistence.size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        (secret_volumes, Some(vec![claim]))
    } else {
        let scratch = Volume {
            name: DATA_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        };
        (
            std::iter::once(scratch).chain(secret_volumes).collect(),
            None,
        )
    };
    let volumes = (!volumes.is_empty()).then_some(volumes);
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(input.statefulset_replicas).unwrap_or(i32::MAX)),
            service_name: Some(names.peer_service()),
            selector: LabelSelector {
                match_labels: Some(names.selector()),
                ..LabelSelector::default()
            },
            // Parallel: after a full outage every pod must start for a quorum to form;
            // ordered start would wait forever for pod 0 to become ready alone.
            pod_management_policy: Some("Parallel".into()),
            // The operator deletes pods itself, one at a time, the leader last.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: (!tpl.annotations.is_empty()).then(|| tpl.annotations.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.service_account()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        ..PodSecurityContext::default()
                    }),
                    node_selector: (!tpl.node_selector.is_empty())
                        .then(|| tpl.node_selector.clone()),
                    tolerations: (!tpl.tolerations.is_empty()).then(|| tpl.tolerations.clone()),
                    affinity: Some(
                        tpl.affinity
                            .clone()
                            .unwrap_or_else(|| default_affinity(names)),
                    ),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    volumes,
                    ..PodSpec::default()
                }),
            },
            // Claims outlive scaling: a StatefulSet scaled down by hand (even to 0) keeps
            // its members' data, and their pods recover from disk when brought back. The
            // operator deletes a claim itself once its member has left the view
            // (Step::DeleteClaim). Deleting the cluster keeps the claims, as Kubernetes
            // does by default.
            persistent_volume_claim_retention_policy: claims.as_ref().map(|_| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some("Retain".into()),
                }
            }),
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
