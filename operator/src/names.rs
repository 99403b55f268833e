//! Names and labels of everything the operator renders for a cluster, in one place so
//! builders, observation and tests agree.

use std::collections::BTreeMap;

/// Port for clients and peers inside the pods.
pub const REPLICA_PORT: i32 = 14000;
/// Port the replicas' nameserver listens on (unprivileged, behind the DNS Service).
pub const DNS_CONTAINER_PORT: i32 = 5353;
/// ConfigMap key naming the pod that may found the group.
pub const FOUND_IF_KEY: &str = "found-if";
/// Field manager for server-side apply.
pub const MANAGER: &str = "concoord-operator";
/// Finalizer guarding the Route53 records.
pub const FINALIZER: &str = "concoord.io/route53-records";
/// Mount path of the data volume.
pub const DATA_DIR: &str = "/data";
/// Name of the volume claim template (claims are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// The Kubernetes cluster's DNS domain unless `--cluster-domain` says otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The names derived from a cluster's name and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNames {
    pub name: String,
    pub namespace: String,
    /// The Kubernetes cluster's DNS domain (kubelet `clusterDomain`), e.g. `cluster.local`.
    pub cluster_domain: String,
}

impl ClusterNames {
    /// Names in a Kubernetes cluster whose DNS domain is `cluster.local`.
    pub fn new(name: &str, namespace: &str) -> ClusterNames {
        ClusterNames::in_domain(name, namespace, DEFAULT_CLUSTER_DOMAIN)
    }
    pub fn in_domain(name: &str, namespace: &str, cluster_domain: &str) -> ClusterNames {
        ClusterNames {
            name: name.to_string(),
            namespace: namespace.to_string(),
            cluster_domain: cluster_domain.trim_end_matches('.').to_string(),
        }
    }
    pub fn statefulset(&self) -> String {
        self.name.clone()
    }
    pub fn peer_service(&self) -> String {
        format!("{}-peers", self.name)
    }
    pub fn client_service(&self) -> String {
        self.name.clone()
    }
    pub fn dns_service(&self) -> String {
        format!("{}-dns", self.name)
    }
    pub fn bootstrap_configmap(&self) -> String {
        format!("{}-bootstrap", self.name)
    }
    pub fn pdb(&self) -> String {
        self.name.clone()
    }
    pub fn service_account(&self) -> String {
        self.name.clone()
    }
    /// The operator's CA (certificate and key): never mounted in a pod.
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.name)
    }
    /// The replicas' certificate, key and the CA.
    pub fn server_tls_secret(&self) -> String {
        format!("{}-server-tls", self.name)
    }
    /// The applications' client certificate, key and the CA.
    pub fn client_tls_secret(&self) -> String {
        format!("{}-client-tls", self.name)
    }
    /// The replicas' auth file (token digests and certificate names with their roles).
    pub fn auth_secret(&self) -> String {
        format!("{}-auth", self.name)
    }
    /// The admin token: the operator's and the probes'.
    pub fn admin_token_secret(&self) -> String {
        format!("{}-admin-token", self.name)
    }
    /// The applications' token (role client).
    pub fn app_token_secret(&self) -> String {
        format!("{}-app-token", self.name)
    }
    /// The common name of the applications' client certificate.
    pub fn client_cert_name(&self) -> String {
        format!("{}-client", self.name)
    }
    pub fn network_policy(&self) -> String {
        self.name.clone()
    }
    /// The names a replica is dialled at inside the Kubernetes cluster: each pod, the peer
    /// and client Services, and the loopback the probes use (`security::server_hosts` adds
    /// the names its nameserver publishes).
    pub fn server_hosts(&self) -> Vec<String> {
        let svc = format!("{}.{}", self.client_service(), self.namespace);
        vec![
            format!("*.{}", self.peer_domain()),
            self.peer_domain(),
            self.client_service(),
            svc.clone(),
            format!("{svc}.svc"),
            format!("{svc}.svc.{}", self.cluster_domain),
            "localhost".into(),
            "127.0.0.1".into(),
        ]
    }
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }
    pub fn claim(&self, ordinal: u32) -> String {
        format!("{DATA_VOLUME}-{}", self.pod(ordinal))
    }
    /// `NAME-peers.NS.svc.CLUSTER_DOMAIN`
    pub fn peer_domain(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.peer_service(),
            self.namespace,
            self.cluster_domain
        )
    }
    /// A replica's identity in the view: `POD.NAME-peers.NS.svc.CLUSTER_DOMAIN:14000`.
    pub fn member_address(&self, ordinal: u32) -> String {
        format!(
            "{}.{}:{REPLICA_PORT}",
            self.pod(ordinal),
            self.peer_domain()
        )
    }
    /// The ordinal of a member address of this cluster, if it is one.
    pub fn ordinal_of(&self, address: &str) -> Option<u32> {
        let host = address.strip_suffix(&format!(":{REPLICA_PORT}"))?;
        let pod = host.strip_suffix(&format!(".{}", self.peer_domain()))?;
        let n = pod.strip_prefix(&format!("{}-", self.name))?;
        // "07" is not pod 7: only the canonical spelling counts.
        let ordinal: u32 = n.parse().ok()?;
        (ordinal.to_string() == n).then_some(ordinal)
    }
    /// The ordinal of a claim `data-NAME-i` the StatefulSet made.
    pub fn ordinal_of_claim(&self, claim: &str) -> Option<u32> {
        self.ordinal_of_pod(claim.strip_prefix(&format!("{DATA_VOLUME}-"))?)
    }
    /// The ordinal of a pod name of this cluster.
    pub fn ordinal_of_pod(&self, pod: &str) -> Option<u32> {
        let n = pod.strip_prefix(&format!("{}-", self.name))?;
        let ordinal: u32 = n.parse().ok()?;
        (ordinal.to_string() == n).then_some(ordinal)
    }
    /// Default DNS domain: `<name>.<namespace>.concoord`.
    pub fn default_domain(&self) -> String {
        format!("{}.{}.concoord", self.name, self.namespace)
    }
    /// Labels every rendered object carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector();
        l.insert(
            "app.kubernetes.io/managed-by".into(),
            "concoord-operator".into(),
        );
        l
    }
    /// Labels that select this cluster's pods.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "concoord".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.name.clone()),
        ])
    }
    /// The selector as a `key=value,...` string for list calls.
    pub fn selector_string(&self) -> String {
        self.selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let n = ClusterNames::new("demo", "ns1");
        assert_eq!(
            n.member_address(2),
            "demo-2.demo-peers.ns1.svc.cluster.local:14000"
        );
        assert_eq!(n.ordinal_of(&n.member_address(12)), Some(12));
        assert_eq!(
            n.ordinal_of("demo-02.demo-peers.ns1.svc.cluster.local:14000"),
            None
        );
        assert_eq!(
            n.ordinal_of("other-1.other-peers.ns1.svc.cluster.local:14000"),
            None
        );
        assert_eq!(n.ordinal_of("10.0.0.1:14000"), None);
        assert_eq!(n.ordinal_of_pod("demo-3"), Some(3));
        assert_eq!(n.ordinal_of_pod("demo-x"), None);
    }
}
