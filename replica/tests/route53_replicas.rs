//! Real replicas with `-n DOMAIN -r` keep a Route53 hosted zone (moto on 127.0.0.1) in step
//! with the view, with credentials stored by `concoord route53id/route53key`.

mod dns_support;
mod route53_support;

use dns_support::DnsCluster;
use route53_support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

async fn wait_for_targets(client: &aws_sdk_route53::Client, zone: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dump(client, zone).await;
        let srv = values(&d, "_concoord._tcp.counterdomain.com.", "SRV").unwrap_or_default();
        if srv.split(',').filter(|s| !s.is_empty()).count() == n {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "Route53 never listed {n} targets: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_publish_their_view_to_route53() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let zone = create_zone(&client, DOMAIN).await;

    // Credentials through the seed's commands, into a private file.
    let config = std::env::temp_dir().join(format!("concoord-r53-{}", rand::random::<u64>()));
    for args in [["route53id", "AKIDTEST"], ["route53key", "SECRETTEST"]] {
        let out = Command::new(dns_support::BIN)
            .args(args)
            .env("CONCOORD_CONFIG_DIR", &config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = config.join("route53");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("AKIDTEST") && text.contains("SECRETTEST"));

    // The endpoint and region from the environment; the keys only from the file.
    let env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL", moto.url()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("CONCOORD_CONFIG_DIR", config.display().to_string()),
    ];
    let mut c = DnsCluster {
        replicas: Vec::new(),
    };
    for _ in 0..2 {
        c.add(&["-r"], &env).await;
    }
    let d = wait_for_targets(&client, &zone, 2).await;
    assert_eq!(
        values(&d, "counterdomain.com.", "A"),
        Some("127.0.0.11,127.0.0.12")
    );
    c.add(&["-r"], &env).await;
    let d = wait_for_targets(&client, &zone, 3).await;
    assert_eq!(values(&d, "r3.counterdomain.com.", "A"), Some("127.0.0.13"));
    // The local nameservers answer as well.
    let m = dns_support::ask(
        c.replicas[2].dns(),
        "counterdomain.com.",
        hickory_proto::rr::RecordType::A,
        hickory_proto::rr::DNSClass::IN,
        false,
        None,
    )
    .await;
    assert_eq!(m.answers.len(), 3);

    // Removing a member removes its records.
    let gone = c.replicas[1].addr();
    concoord::client::remove_member(&c.addrs(), &gone, Duration::from_secs(20))
        .await
        .unwrap();
    let d = wait_for_targets(&client, &zone, 2).await;
    assert_eq!(values(&d, "r2.counterdomain.com.", "A"), None);
    let _ = std::fs::remove_dir_all(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_is_served_locally_while_route53_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut env = aws_env(&nowhere);
    env.push((
        "CONCOORD_CONFIG_DIR",
        std::env::temp_dir().display().to_string(),
    ));
    let mut c = DnsCluster {
        replicas: Vec::new(),
    };
    c.add(&["-r", "--route53-zone-id", "ZNOWHERE"], &env).await;
    for _ in 0..3 {
        let m = dns_support::ask(
            c.replicas[0].dns(),
            "_concoord._tcp.counterdomain.com.",
            hickory_proto::rr::RecordType::SRV,
            hickory_proto::rr::DNSClass::IN,
            false,
            None,
        )
        .await;
        assert_eq!(m.answers.len(), 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let child = c.replicas[0].child.as_mut().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the replica keeps running"
    );
}
