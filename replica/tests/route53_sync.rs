//! Route53 sync against a moto server started by the test on 127.0.0.1: create, change,
//! no-op and removal, touching only records we own; throttling, dropped connections and
//! server errors injected by a proxy in front of moto, since moto does not emulate them.

mod route53_support;

use concoord::command::View;
use concoord::dns::leader::Leadership;
use concoord::dns::route53::Route53Settings;
use concoord::dns::route53::api::{ApiError, Route53};
use concoord::dns::route53::credentials::Stored;
use concoord::dns::route53::sync::{Outcome, SyncError, Syncer};
use concoord::dns::zone::{Zone, ZoneInput, parse_domain};
use route53_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn zone(number: u64, ids: &[u64], leader: u64) -> Zone {
    let members: BTreeMap<u64, String> = ids
        .iter()
        .map(|i| (*i, format!("10.0.0.{i}:{}", 14000 + i)))
        .collect();
    let ips = ids
        .iter()
        .map(|i| (*i, vec![format!("10.0.0.{i}").parse().unwrap()]))
        .collect();
    let input = ZoneInput {
        view: View {
            number,
            members,
            learners: BTreeMap::new(),
            next_id: 10,
            group: 0,
        },
        leader: Some(leader),
        round: 1,
        ips,
        withdrawn: false,
    };
    Zone::build(&parse_domain(DOMAIN).unwrap(), &input).unwrap()
}

fn creds() -> Stored {
    Stored {
        key_id: Some("testing".into()),
        secret: Some("testing".into()),
    }
}

async fn syncer(
    endpoint: &str,
    settings: Route53Settings,
    z: Zone,
    leader: bool,
) -> (Syncer, watch::Sender<Arc<Zone>>, watch::Sender<Leadership>) {
    let api = Route53::connect(creds(), Some(endpoint)).await;
    let (ztx, zrx) = watch::channel(Arc::new(z));
    let (ltx, lrx) = watch::channel(Leadership {
        leader: Some(1),
        round: 1,
        is_leader: leader,
        withdrawn: false,
    });
    (
        Syncer::new(settings, DOMAIN.into(), api, zrx, lrx),
        ztx,
        ltx,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_change_no_op_and_removal_touch_only_our_records() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let zone_id = create_zone(&client, DOMAIN).await;
    // Someone else's records: one unrelated, one where we would put ours.
    for (name, ip) in [
        ("www.counterdomain.com", "192.0.2.1"),
        ("r3.counterdomain.com", "192.0.2.3"),
    ] {
        let set = aws_sdk_route53::types::ResourceRecordSet::builder()
            .name(name)
            .r#type(aws_sdk_route53::types::RrType::A)
            .ttl(300)
            .resource_records(
                aws_sdk_route53::types::ResourceRecord::builder()
                    .value(ip)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        client
            .change_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .change_batch(
                aws_sdk_route53::types::ChangeBatch::builder()
                    .changes(
                        aws_sdk_route53::types::Change::builder()
                            .action(aws_sdk_route53::types::ChangeAction::Create)
                            .resource_record_set(set)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let before = dump(&client, &zone_id).await;

    // Create (zone found by its name).
    let (mut s, _z, _l) = syncer(
        &moto.url(),
        Route53Settings::default(),
        zone(3, &[1, 2, 3], 1),
        true,
    )
    .await;
    let outcome = s.sync_once(&zone(3, &[1, 2, 3], 1)).await.unwrap();
    assert!(matches!(outcome, Outcome::Sent(_)), "{outcome:?}");
    let d = dump(&client, &zone_id).await;
    assert_eq!(
        values(&d, "counterdomain.com.", "A"),
        Some("10.0.0.1,10.0.0.2,10.0.0.3")
    );
    assert_eq!(
        values(&d, "_concoord._tcp.counterdomain.com.", "SRV"),
        Some(
            "0 100 14001 r1.counterdomain.com.,10 100 14002 r2.counterdomain.com.,10 100 14003 r3.counterdomain.com."
        )
    );
    assert_eq!(
        values(&d, "counterdomain.com.", "TXT").map(|v| v.matches("role=").count()),
        Some(3)
    );
    assert_eq!(values(&d, "r1.counterdomain.com.", "A"), Some("10.0.0.1"));
    // Not ours: left as it was.
    assert_eq!(values(&d, "r3.counterdomain.com.", "A"), Some("192.0.2.3"));
    assert_eq!(values(&d, "www.counterdomain.com.", "A"), Some("192.0.2.1"));
    // Route53's own SOA and NS stay; ours are not written.
    assert_eq!(
        values(&d, "counterdomain.com.", "SOA"),
        values(&before, "counterdomain.com.", "SOA")
    );
    assert_eq!(
        values(&d, "counterdomain.com.", "NS"),
        values(&before, "counterdomain.com.", "NS")
    );
    assert_eq!(values(&d, "ns1.counterdomain.com.", "A"), None);
    let owner = values(&d, "_concoord-owner.counterdomain.com.", "TXT").unwrap();
    assert!(
        owner.contains("heritage=concoord,concoord/owner=concoord"),
        "{owner}"
    );
    assert!(owner.contains("owns A r1.counterdomain.com."), "{owner}");
    assert!(!owner.contains("r3.counterdomain.com."), "{owner}");

    // No-op: nothing differs, nothing is sent.
    assert_eq!(
        s.sync_once(&zone(3, &[1, 2, 3], 1)).await.unwrap(),
        Outcome::InSync
    );
    assert_eq!(dump(&client, &zone_id).await, d);

    // Change: a fourth member, and leadership moves to 2.
    let outcome = s.sync_once(&zone(4, &[1, 2, 3, 4], 2)).await.unwrap();
    assert!(matches!(outcome, Outcome::Sent(_)), "{outcome:?}");
    let d = dump(&client, &zone_id).await;
    assert_eq!(
        values(&d, "counterdomain.com.", "A"),
        Some("10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4")
    );
    assert_eq!(values(&d, "r4.counterdomain.com.", "A"), Some("10.0.0.4"));
    assert!(
        values(&d, "_concoord._tcp.counterdomain.com.", "SRV")
            .unwrap()
            .contains("0 100 14002 r2")
    );

    // Removal: member 2 leaves; its record goes, the foreign ones stay.
    s.sync_once(&zone(5, &[1, 3, 4], 1)).await.unwrap();
    let d = dump(&client, &zone_id).await;
    assert_eq!(values(&d, "r2.counterdomain.com.", "A"), None);
    assert_eq!(
        values(&d, "counterdomain.com.", "A"),
        Some("10.0.0.1,10.0.0.3,10.0.0.4")
    );
    assert_eq!(values(&d, "r3.counterdomain.com.", "A"), Some("192.0.2.3"));
    assert_eq!(values(&d, "www.counterdomain.com.", "A"), Some("192.0.2.1"));
    assert!(
        !values(&d, "_concoord-owner.counterdomain.com.", "TXT")
            .unwrap()
            .contains("r2.")
    );
    assert_eq!(
        s.sync_once(&zone(5, &[1, 3, 4], 1)).await.unwrap(),
        Outcome::InSync
    );

    // Dry run: the batch is logged, not sent.
    let dry = Route53Settings {
        zone_id: Some(zone_id.clone()),
        dry_run: true,
        ..Default::default()
    };
    let (mut d_run, _z, _l) = syncer(&moto.url(), dry, zone(6, &[1], 1), true).await;
    assert!(matches!(
        d_run.sync_once(&zone(6, &[1], 1)).await.unwrap(),
        Outcome::DryRun(_)
    ));
    assert_eq!(dump(&client, &zone_id).await, d);

    // Another owner's records are not ours to change.
    let other = Route53Settings {
        owner: "someone-else".into(),
        ..Default::default()
    };
    let (mut o, _z, _l) = syncer(&moto.url(), other, zone(6, &[1], 1), true).await;
    assert!(matches!(
        o.sync_once(&zone(6, &[1], 1)).await,
        Err(SyncError::Plan(_))
    ));
    assert_eq!(dump(&client, &zone_id).await, d);

    // An unknown domain has no zone.
    let api = Route53::connect(creds(), Some(&moto.url())).await;
    assert!(matches!(
        api.find_zone("nosuch.example").await,
        Err(ApiError::NoZone(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_with_backoff_and_bursts_are_coalesced() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let zone_id = create_zone(&client, DOMAIN).await;
    let proxy = Proxy::start(
        moto.addr,
        Faults {
            throttle_changes: 3,
            ..Default::default()
        },
    )
    .await;
    let settings = Route53Settings {
        zone_id: Some(zone_id.clone()),
        ..Default::default()
    };
    let (s, ztx, _l) = syncer(&proxy.url(), settings, zone(3, &[1, 2, 3], 1), true).await;
    let task = tokio::spawn(s.run());
    let deadline = Instant::now() + Duration::from_secs(20);
    while values(&dump(&client, &zone_id).await, "r3.counterdomain.com.", "A").is_none() {
        assert!(
            Instant::now() < deadline,
            "records never arrived through the throttling"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        proxy.changes.load(Ordering::SeqCst),
        4,
        "3 throttled, then 1 accepted"
    );
    let times = proxy.change_times.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Backoff doubles from 200 ms, with jitter between half and all of it.
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(400), "{gaps:?}");

    // A burst of five view changes goes out as one batch with the last zone.
    for n in 0..5u64 {
        let ids: Vec<u64> = (1..=4 + n).collect();
        ztx.send_replace(Arc::new(zone(4 + n, &ids, 1)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while values(&dump(&client, &zone_id).await, "r8.counterdomain.com.", "A").is_none() {
        assert!(Instant::now() < deadline, "the burst never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        proxy.changes.load(Ordering::SeqCst),
        5,
        "one batch for the burst"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_and_partial_failures_are_retried_and_followers_never_write() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let zone_id = create_zone(&client, DOMAIN).await;
    let proxy = Proxy::start(
        moto.addr,
        Faults {
            drop_lists: 1,
            fail_changes: 2,
            ..Default::default()
        },
    )
    .await;
    let settings = Route53Settings {
        zone_id: Some(zone_id.clone()),
        ..Default::default()
    };

    // A follower waits: no request at all.
    let (s, _z, ltx) = syncer(&proxy.url(), settings.clone(), zone(3, &[1, 2], 1), false).await;
    let task = tokio::spawn(s.run());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        proxy.lists.load(Ordering::SeqCst) + proxy.changes.load(Ordering::SeqCst),
        0
    );

    // Once it leads, it writes, through a dropped list and two failed batches.
    ltx.send_replace(Leadership {
        leader: Some(1),
        round: 2,
        is_leader: true,
        withdrawn: false,
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while values(&dump(&client, &zone_id).await, "r2.counterdomain.com.", "A").is_none() {
        assert!(Instant::now() < deadline, "records never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.changes.load(Ordering::SeqCst), 3);
    assert!(proxy.lists.load(Ordering::SeqCst) >= 4);
    task.abort();

    // Unreachable Route53: a transient error, reported, not fatal.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (mut s, _z, _l) = syncer(&url, settings, zone(3, &[1], 1), true).await;
    match s.sync_once(&zone(3, &[1], 1)).await {
        Err(SyncError::Api(e)) => assert!(e.is_transient(), "{e}"),
        other => panic!("{other:?}"),
    }
}
