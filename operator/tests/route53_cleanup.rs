//! Deleting a cluster deletes the Route53 records its replicas wrote, and only those: a
//! moto server on 127.0.0.1 plays Route53 (the replica crate's test support starts it).

#[path = "../../replica/tests/route53_support/mod.rs"]
mod route53_support;

use concoord::dns::route53::DEFAULT_OWNER;
use concoord::dns::route53::api::Route53;
use concoord::dns::route53::credentials::Stored;
use concoord::dns::route53::plan::{RecordSet, plan};
use concoord_operator::route53::delete_records;
use route53_support::{Moto, create_zone, dump, sdk};

const DOMAIN: &str = "demo.apps.example.com";

fn testing() -> Stored {
    Stored {
        key_id: Some("testing".into()),
        secret: Some("testing".into()),
    }
}

#[tokio::test]
async fn cleanup_deletes_only_the_replicas_records() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let url = moto.url();
    let eyes = sdk(&url);
    let zone = create_zone(&eyes, "example.com").await;
    let before = dump(&eyes, &zone).await;

    // What the replicas' sync writes for a 2-member view (with its ownership record).
    let api = Route53::connect(testing(), Some(&url)).await;
    let ours = [
        RecordSet::new(DOMAIN, "A", 60, vec!["10.0.0.1".into(), "10.0.0.2".into()]),
        RecordSet::new(
            &format!("_concoord._tcp.{DOMAIN}"),
            "SRV",
            60,
            vec!["0 0 14000 r1.demo.apps.example.com.".into()],
        ),
    ];
    let create = plan(
        DOMAIN,
        DEFAULT_OWNER,
        &ours,
        &api.list(&zone).await.unwrap(),
    )
    .unwrap();
    api.apply(&zone, &create.changes, "test: replicas")
        .await
        .unwrap();
    // Somebody else's record in the same zone.
    let theirs = RecordSet::new("www.example.com", "A", 60, vec!["192.0.2.7".into()]);
    let other = plan("www.example.com", "someone-else", &[theirs], &[]).unwrap();
    api.apply(&zone, &other.changes, "test: other")
        .await
        .unwrap();
    let written = dump(&eyes, &zone).await;
    assert!(
        written.iter().any(|l| l.starts_with("_concoord._tcp.demo")),
        "{written:?}"
    );

    let sent = delete_records(&zone, DOMAIN, testing(), Some(&url))
        .await
        .unwrap();
    assert!(sent >= 3, "deleted {sent} record sets");
    let after = dump(&eyes, &zone).await;
    assert!(!after.iter().any(|l| l.contains("demo.apps")), "{after:?}");
    assert!(
        after
            .iter()
            .any(|l| l.starts_with("www.example.com. A 192.0.2.7")),
        "{after:?}"
    );
    for line in &before {
        assert!(after.contains(line), "{line} vanished: {after:?}");
    }
    // Deleting again finds nothing of ours.
    assert_eq!(
        delete_records(&zone, DOMAIN, testing(), Some(&url)).await,
        Ok(0)
    );
}
