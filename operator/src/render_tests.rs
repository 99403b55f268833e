//! Builders from YAML fixtures: operator/tests/fixtures/NAME.yaml is a ConCoordCluster,
//! NAME.expected.yaml the objects it renders (reviewed by hand; `UPDATE_FIXTURES=1`
//! rewrites them after an intended change). Key fields are also asserted one by one.

use crate::crd::ConCoordCluster;
use crate::podexec::{PodFacts, pod_process};
use crate::render::{RenderInput, Rendered, render};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> ConCoordCluster {
    let text = std::fs::read_to_string(fixture(&format!("{name}.yaml"))).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn as_yaml(r: &Rendered) -> String {
    let mut docs = vec![
        serde_norway::to_string(&r.service_account).unwrap(),
        serde_norway::to_string(&r.configmap).unwrap(),
        serde_norway::to_string(&r.peer_service).unwrap(),
        serde_norway::to_string(&r.client_service).unwrap(),
    ];
    if let Some(dns) = &r.dns_service {
        docs.push(serde_norway::to_string(dns).unwrap());
    }
    docs.push(serde_norway::to_string(&r.pdb).unwrap());
    if let Some(policy) = &r.network_policy {
        docs.push(serde_norway::to_string(policy).unwrap());
    }
    docs.push(serde_norway::to_string(&r.statefulset).unwrap());
    docs.iter().map(|d| format!("---\n{d}")).collect()
}

fn check_golden(name: &str, input: &RenderInput) -> Rendered {
    let rendered = render(&load(name), input).unwrap();
    let have = as_yaml(&rendered);
    let path = fixture(&format!("{name}.expected.yaml"));
    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1") {
        std::fs::write(&path, &have).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(
        have == want,
        "{} differs from the rendering:\n{have}\n(UPDATE_FIXTURES=1 rewrites it)",
        path.display()
    );
    rendered
}

#[test]
fn minimal_cluster_renders_the_agreed_objects() {
    let r = check_golden(
        "minimal",
        &RenderInput {
            statefulset_replicas: 1,
            bootstrapped: false,
            cluster_domain: "cluster.local".into(),
        },
    );
    let sts = &r.statefulset;
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
    assert_eq!(
        spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    // Owned by the cluster, labelled as agreed.
    let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ConCoordCluster", "demo", Some(true))
    );
    let labels = sts.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/instance"], "demo");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "concoord-operator");
    // Before bootstrap, pod 0 may found the group.
    assert_eq!(r.configmap.data.as_ref().unwrap()["found-if"], "demo-0");
    let peers = r.peer_service.spec.as_ref().unwrap();
    assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peers.publish_not_ready_addresses, Some(true));
    assert_eq!(
        peers.ports.as_ref().unwrap()[0].name.as_deref(),
        Some("concoord")
    );
    let dns = r.dns_service.as_ref().unwrap().spec.as_ref().unwrap();
    let ports: Vec<_> = dns
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.protocol.clone().unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        [
            ("dns-udp".to_string(), "UDP".to_string(), 53),
            ("dns-tcp".to_string(), "TCP".to_string(), 53)
        ]
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(
        claims[0]
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "1Gi"
    );
}

#[test]
fn full_cluster_passes_every_setting_through() {
    let r = check_golden(
        "full",
        &RenderInput {
            statefulset_replicas: 5,
            bootstrapped: true,
            cluster_domain: "cluster.local".into(),
        },
    );
    assert_eq!(r.configmap.data.as_ref().unwrap()["found-if"], "");
    assert_eq!(
        r.service_account.metadata.annotations.as_ref().unwrap()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/concoord"
    );
    let spec = r.statefulset.spec.as_ref().unwrap();
    assert!(spec.volume_claim_templates.is_none());
    let pod = spec.template.spec.as_ref().unwrap();
    assert!(pod.volumes.as_ref().unwrap()[0].empty_dir.is_some());
    assert_eq!(pod.node_selector.as_ref().unwrap()["disktype"], "ssd");
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/concoord/replica:0.2.0")
    );
    let args = c.args.as_ref().unwrap();
    let zone = args.iter().position(|a| a == "--route53-zone-id").unwrap();
    assert_eq!(args[zone + 1], "Z0123456789");
    assert!(args.contains(&"-r".to_string()));
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(env.contains(&"AWS_SECRET_ACCESS_KEY"));
    let dns = r.dns_service.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(dns.ports.as_ref().unwrap()[0].port, 1053);
    // Provided certificates and auth: the user's Secret and the auth file are mounted, the
    // admin token reaches the probes; the CA Secret never exists in this mode.
    let secrets: Vec<&str> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.as_deref())
        .collect();
    assert_eq!(secrets, ["locks-certs", "locks-auth"]);
    assert!(
        args.windows(2)
            .any(|w| w == ["--auth-file", "/etc/concoord/auth/auth"])
    );
    assert!(env.contains(&"CONCOORD_TOKEN"));
    // Clients from the selected namespace, besides the cluster's own pods and the operator.
    let policy = r.network_policy.as_ref().unwrap().spec.as_ref().unwrap();
    let rules = policy.ingress.as_ref().unwrap();
    let from = rules[0].from.as_ref().unwrap();
    assert_eq!(from.len(), 3);
    assert_eq!(
        from[2]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["team"],
        "a"
    );
    assert!(rules[1].from.is_none(), "DNS is open to all");
}

/// Which certificates the operator keeps and which it issues again.
#[test]
fn the_rotation_plan_renews_what_expires_or_no_longer_fits() {
    use crate::security::{CertPlan, RENEW_BEFORE_SECS, plan_certificate};
    use concoord::pki::{self, CertKind};
    let ca = pki::new_ca("CA", 3650).unwrap();
    let other_ca = pki::new_ca("another CA", 3650).unwrap();
    let hosts = vec!["*.demo-peers.apps.svc.cluster.local".to_string()];
    let cert = pki::issue(&ca, "demo", &hosts, 90, CertKind::Replica).unwrap();
    let data = |cert: &str, ca_cert: &str| {
        BTreeMap::from([
            ("tls.crt".to_string(), cert.to_string()),
            ("tls.key".to_string(), "key".to_string()),
            ("ca.crt".to_string(), ca_cert.to_string()),
        ])
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let fresh = data(&cert.cert, &ca.cert);
    assert_eq!(
        plan_certificate(Some(&fresh), &ca.cert, &hosts, now),
        CertPlan::Keep
    );
    let issue = |plan: CertPlan, why: &str| match plan {
        CertPlan::Issue(reason) => assert!(reason.contains(why), "{reason}"),
        CertPlan::Keep => panic!("kept; expected a new certificate because {why}"),
    };
    issue(
        plan_certificate(None, &ca.cert, &hosts, now),
        "does not exist",
    );
    // 61 days on, 29 are left: renewed.
    let later = now + 61 * 86_400;
    assert!(later + RENEW_BEFORE_SECS > now + 90 * 86_400);
    issue(
        plan_certificate(Some(&fresh), &ca.cert, &hosts, later),
        "expires in",
    );
    issue(
        plan_certificate(Some(&fresh), &other_ca.cert, &hosts, now),
        "another CA",
    );
    let more = vec![hosts[0].clone(), "127.0.0.1".to_string()];
    issue(
        plan_certificate(Some(&fresh), &ca.cert, &more, now),
        "names",
    );
    let mut partial = fresh.clone();
    partial.remove("tls.key");
    issue(
        plan_certificate(Some(&partial), &ca.cert, &hosts, now),
        "lacks",
    );
    let garbled = data("garbage", &ca.cert);
    issue(
        plan_certificate(Some(&garbled), &ca.cert, &hosts, now),
        "parse",
    );
}

#[test]
fn dns_off_renders_no_dns_service() {
    let mut cc = load("minimal");
    cc.spec.dns.enabled = false;
    let r = render(
        &cc,
        &RenderInput {
            statefulset_replicas: 3,
            bootstrapped: true,
            cluster_domain: "cluster.local".into(),
        },
    )
    .unwrap();
    assert!(r.dns_service.is_none());
    let args = r
        .statefulset
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(!args.contains(&"-n".to_string()));
    // Without a uid (not from the API server) nothing can be owned.
    cc.metadata.uid = None;
    assert!(
        render(
            &cc,
            &RenderInput {
                statefulset_replicas: 1,
                bootstrapped: true,
                cluster_domain: "cluster.local".into(),
            }
        )
        .is_err()
    );
}

#[test]
fn pod_process_is_the_command_the_kubelet_runs() {
    let before = RenderInput {
        statefulset_replicas: 3,
        bootstrapped: false,
        cluster_domain: "cluster.local".into(),
    };
    let r = render(&load("minimal"), &before).unwrap();
    let cms = BTreeMap::from([(
        "demo-bootstrap".to_string(),
        r.configmap.data.clone().unwrap(),
    )]);
    let p = pod_process(
        &r.statefulset,
        &PodFacts {
            ordinal: 1,
            ip: "10.0.0.11".into(),
        },
        &cms,
    )
    .unwrap();
    assert_eq!(p.pod_name, "demo-1");
    assert_eq!(
        p.image,
        format!("concoord/replica:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        p.argv,
        [
            "/concoord",
            "replica",
            "-a",
            "demo-1.demo-peers.apps.svc.cluster.local",
            "-p",
            "14000",
            "--advertise-ip",
            "10.0.0.11",
            "-b",
            "demo-peers.apps.svc.cluster.local:14000",
            "-w",
            "--data-dir",
            "/data",
            "-n",
            "demo.apps.concoord",
            "--dns-addr",
            "0.0.0.0",
            "--dns-port",
            "5353",
            "--tls-cert",
            "/etc/concoord/tls/tls.crt",
            "--tls-key",
            "/etc/concoord/tls/tls.key",
            "--tls-ca",
            "/etc/concoord/tls/ca.crt"
        ]
    );
    let env: BTreeMap<_, _> = p.env.iter().cloned().collect();
    // The probes check the replica against the CA.
    assert_eq!(env["CONCOORD_CA"], "/etc/concoord/tls/ca.crt");
    assert_eq!(env["POD_NAME"], "demo-1");
    assert_eq!(env["POD_IP"], "10.0.0.11");
    assert_eq!(env["POD_NAMESPACE"], "apps");
    assert_eq!(env["CONCOORD_FOUND_IF"], "demo-0");
    // Without the ConfigMap the optional variable is simply absent.
    let p = pod_process(
        &r.statefulset,
        &PodFacts {
            ordinal: 0,
            ip: "10.0.0.10".into(),
        },
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(p.env.iter().all(|(k, _)| k != "CONCOORD_FOUND_IF"));
}

#[test]
fn member_addresses_use_the_configured_cluster_domain() {
    let r = render(
        &load("minimal"),
        &RenderInput {
            statefulset_replicas: 3,
            bootstrapped: true,
            cluster_domain: "corp.example.".into(),
        },
    )
    .unwrap();
    let args = r
        .statefulset
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    let after = |flag: &str| {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1].clone()
    };
    assert_eq!(after("-a"), "$(POD_NAME).demo-peers.apps.svc.corp.example");
    assert_eq!(after("-b"), "demo-peers.apps.svc.corp.example:14000");
    assert!(
        !args.iter().any(|a| a.contains("cluster.local")),
        "{args:?}"
    );
}
