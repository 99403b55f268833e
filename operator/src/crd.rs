//! The `ConCoordCluster` custom resource (concoord.io/v1alpha1): spec with defaults and CEL
//! rules, and the status the operator reports. The CRD YAML in crds/ is generated from
//! these types (see `generate`), never edited by hand.

// Every `printcolumn(...)` repeats `type_ = "integer"` etc. by design of kube's derive.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The operator's own version: the default replica image tag.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The replica image repository when the spec names none.
pub const DEFAULT_IMAGE: &str = "concoord/replica";

/// A ConCoord cluster: replicas in a StatefulSet whose membership the operator changes
/// through Paxos, with a nameserver Service answering the cluster's domain.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "concoord.io",
    version = "v1alpha1",
    kind = "ConCoordCluster",
    plural = "concoordclusters",
    shortname = "ccc",
    namespaced,
    status = "ConCoordClusterStatus",
    derive = "PartialEq",
    doc = "A Paxos-replicated ConCoord cluster managed by concoord-operator",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "desired replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "replicas that are voting members and caught up"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "the Paxos leader"
    ),
    printcolumn(
        name = "View",
        type_ = "integer",
        json_path = ".status.view",
        description = "membership view number"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConCoordClusterSpec {
    /// Number of replicas (Paxos members); odd numbers tolerate the most failures.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("replicas must be at least 1"))]
    pub replicas: i32,
    /// Replica image repository.
    #[serde(default = "default_image")]
    pub image: String,
    /// Replica image tag; changing it rolls the pods one at a time, the leader last.
    #[serde(default = "default_version")]
    pub version: String,
    /// Pull policy of the replica image (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Objects created once, when the group is founded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectSpec>,
    /// User-defined object types: Python classes kept in ConfigMaps, defined in the group
    /// once it is founded and defined again (replacing the code, keeping the objects'
    /// state) whenever a ConfigMap's content changes. A class the replicas refuse leaves
    /// the running code alone and sets the Degraded condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_types: Vec<ObjectTypeSpec>,
    /// DNS domain the replicas' nameserver answers for [default: <name>.<namespace>.concoord].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The nameserver Service.
    #[serde(default)]
    pub dns: DnsSpec,
    /// Keep each replica's log and snapshots on a PersistentVolumeClaim.
    #[serde(default)]
    pub persistence: PersistenceSpec,
    /// Resources of the replica container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pod settings passed through to the StatefulSet's pod template.
    #[serde(default)]
    pub pod_template: PodTemplateSpec,
    /// Mirror the view into a Route53 hosted zone (records are deleted with the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Spec>,
    /// TLS on the replicas' port, for clients and peers.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Clients prove who they are (a token or the client certificate) and get a role.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Who may reach the replicas' port.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// Where the replicas' certificates come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// The operator makes a CA, the replicas' certificate and a client certificate for
    /// applications, and renews them before they expire.
    #[default]
    Operator,
    /// The user's Secrets (cert-manager's, say): `serverSecret` for the replicas.
    Provided,
    /// Plaintext.
    Disabled,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'provided' || has(self.serverSecret)").message("tls.mode provided needs tls.serverSecret")
)]
pub struct TlsSpec {
    #[serde(default)]
    pub mode: TlsMode,
    /// Provided: a Secret with `tls.crt`, `tls.key` and `ca.crt` (cert-manager's form)
    /// whose certificate names every pod (`*.<name>-peers.<namespace>.svc.<cluster domain>`)
    /// and `127.0.0.1` (the probes), with server and client usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_secret: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Require clients to authenticate: the operator creates `<name>-admin-token` (its own
    /// and the probes'), `<name>-app-token` (role client) and the replicas' auth file, in
    /// which the client certificate of `<name>-client-tls` also has role client.
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create a NetworkPolicy: the replicas' port is open to the cluster's own pods, the
    /// operator and `clients`; DNS stays open to all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Who may call the replicas (NetworkPolicy peers) [default: pods of the same namespace].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> NetworkPolicySpec {
        NetworkPolicySpec {
            enabled: true,
            clients: Vec::new(),
        }
    }
}

/// An object to create at bootstrap, as `concoord call --create NAME TYPE ARGS...` would.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSpec {
    /// Object name, e.g. `counter`.
    pub name: String,
    /// Object type, short or dotted ConCoord name, e.g. `Counter` or `concoord.object.lock.Lock`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Constructor arguments (JSON values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_json_values")]
    pub args: Vec<serde_json::Value>,
}

/// A user-defined object type whose Python source is one key of a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTypeSpec {
    pub config_map_ref: ConfigMapKeyRef,
    /// The class to define [default: the source's only class].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// The Python module of the type (`module.Class`) [default: the key without `.py`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// One key of a ConfigMap in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key holding the source, e.g. `tencounter.py`.
    #[schemars(length(min = 1))]
    pub key: String,
}

impl ObjectTypeSpec {
    /// The module name: as given, or the key without `.py`.
    pub fn module_name(&self) -> String {
        self.module.clone().unwrap_or_else(|| {
            let key = &self.config_map_ref.key;
            key.strip_suffix(".py").unwrap_or(key).to_string()
        })
    }

    /// `configmap/key`, for messages.
    pub fn source_name(&self) -> String {
        format!("{}/{}", self.config_map_ref.name, self.config_map_ref.key)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    /// Run the nameserver and its Service.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Port of the DNS Service (the container listens on 5353).
    #[serde(default = "default_dns_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for DnsSpec {
    fn default() -> DnsSpec {
        DnsSpec {
            enabled: true,
            port: default_dns_port(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// The whole block: it becomes the StatefulSet's volumeClaimTemplates, which the API server
// refuses to change, so any edit here would make every later apply fail.
#[x_kube(
    validation = Rule::new("self == oldSelf").message("persistence is immutable (enabled, size, storageClassName): a StatefulSet cannot change its volume claims; create a new cluster instead")
)]
pub struct PersistenceSpec {
    /// Keep data on a PersistentVolumeClaim per replica; without it a restarted pod rejoins empty.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Size of each replica's volume claim (immutable, like the whole block).
    #[serde(default = "default_size")]
    pub size: String,
    /// Storage class of the claims (immutable) [default: the cluster's default class].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for PersistenceSpec {
    fn default() -> PersistenceSpec {
        PersistenceSpec {
            enabled: true,
            size: default_size(),
            storage_class_name: None,
        }
    }
}

/// The pod settings a user may set; everything else is the operator's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Replaces the default (preferred anti-affinity across nodes) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53Spec {
    /// Hosted zone id the domain's records are written to.
    pub zone_id: String,
    /// Secret holding AWS credentials; omit it to use the service account's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecret>,
    /// IAM role for the replicas' service account (annotation eks.amazonaws.com/role-arn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    pub name: String,
    #[serde(default = "default_key_id_key")]
    pub access_key_id_key: String,
    #[serde(default = "default_secret_key_key")]
    pub secret_access_key_key: String,
}

/// What the operator last saw.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConCoordClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods in the StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are voting members and caught up.
    #[serde(default)]
    pub ready_replicas: i32,
    // The status is sent as a merge patch: members, leader and view are always sent
    // (empty list, null) so what is no longer known is cleared, not left stale.
    /// Members as the replicas report them now; empty when none answers.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Pod names of the members when membership was last known: the pods the operator
    /// brings back and asks when no replica answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_known_members: Vec<String>,
    /// Pod name of the leader; null when unknown.
    #[serde(default)]
    pub leader: Option<String>,
    /// Membership view number; null when unknown.
    #[serde(default)]
    pub view: Option<i64>,
    /// The group has been founded; from now on every pod joins (pod 0 included).
    #[serde(default)]
    pub bootstrapped: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The user-defined object types the group runs, as last defined from spec.objectTypes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_types: Vec<ObjectTypeStatus>,
    /// The certificates in use and when they expire (the operator renews its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
}

/// One certificate the replicas or their clients use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The Secret holding it.
    pub secret: String,
    /// ca, server or client.
    pub kind: String,
    /// The end of its validity (RFC 3339).
    pub not_after: String,
}

/// A user-defined object type the group runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTypeStatus {
    /// `module.Class`.
    pub name: String,
    /// SHA-256 of the source the group runs.
    pub sha256: String,
    /// Where the source came from: `configmap/key`.
    pub source: String,
}

impl ConCoordClusterStatus {
    /// Pod names of the last known members (older statuses kept them only in `members`).
    pub fn last_known(&self) -> Vec<String> {
        if self.last_known_members.is_empty() {
            self.members.iter().map(|m| m.name.clone()).collect()
        } else {
            self.last_known_members.clone()
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Pod name.
    pub name: String,
    /// host:port the member is known by in the view.
    pub address: String,
    /// Replica id in the view.
    pub id: i64,
    pub leader: bool,
    pub healthy: bool,
    /// Added but not yet voting (catching up).
    pub learner: bool,
}

/// A list of arbitrary JSON values; a structural schema must say so explicitly.
fn any_json_values(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"x-kubernetes-preserve-unknown-fields": true}
    })
}

fn default_replicas() -> i32 {
    3
}
fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_version() -> String {
    OPERATOR_VERSION.into()
}
fn default_dns_port() -> i32 {
    53
}
fn default_size() -> String {
    "1Gi".into()
}
fn default_key_id_key() -> String {
    "aws_access_key_id".into()
}
fn default_secret_key_key() -> String {
    "aws_secret_access_key".into()
}
fn yes() -> bool {
    true
}
