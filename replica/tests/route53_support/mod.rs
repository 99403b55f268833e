//! Helpers for the Route53 tests: a moto server started on 127.0.0.1 by the test (see
//! `moto_support`), an SDK client for it, and a small HTTP proxy in front of it that
//! injects the failures moto does not emulate (throttling, dropped connections, 5xx).
//! Nothing here talks to anything but 127.0.0.1.

#![allow(dead_code)]

#[path = "../moto_support/mod.rs"]
mod moto_support;
pub use moto_support::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub const DOMAIN: &str = "counterdomain.com";

/// An SDK client for `endpoint`, as the test's own eyes on the hosted zone.
pub fn sdk(endpoint: &str) -> aws_sdk_route53::Client {
    let conf = aws_sdk_route53::Config::builder()
        .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
        .region(aws_sdk_route53::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_route53::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_route53::Client::from_conf(conf)
}

/// Creates a public hosted zone; its bare id.
pub async fn create_zone(client: &aws_sdk_route53::Client, domain: &str) -> String {
    let out = client
        .create_hosted_zone()
        .name(domain)
        .caller_reference(format!("test-{}", rand::random::<u64>()))
        .send()
        .await
        .expect("create a hosted zone in moto");
    let id = out.hosted_zone().unwrap().id().to_string();
    concoord::dns::route53::api::bare_id(&id)
}

/// The zone's record sets as `NAME TYPE value,value` lines, sorted.
pub async fn dump(client: &aws_sdk_route53::Client, zone: &str) -> Vec<String> {
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("list record sets");
    let mut lines: Vec<String> = out
        .resource_record_sets()
        .iter()
        .map(|s| {
            let mut values: Vec<&str> = s.resource_records().iter().map(|r| r.value()).collect();
            values.sort();
            format!(
                "{} {} {}",
                s.name().to_lowercase(),
                s.r#type().as_str(),
                values.join(",")
            )
        })
        .collect();
    lines.sort();
    lines
}

/// The value list of one record set in a dump, if present.
pub fn values<'a>(dump: &'a [String], name: &str, rtype: &str) -> Option<&'a str> {
    let prefix = format!("{name} {rtype} ");
    dump.iter().find_map(|l| l.strip_prefix(&prefix))
}

/// What the proxy does to requests of one kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Answer this many ChangeResourceRecordSets with a Throttling error.
    pub throttle_changes: usize,
    /// Answer this many ChangeResourceRecordSets with HTTP 500.
    pub fail_changes: usize,
    /// Close this many ListResourceRecordSets connections without an answer.
    pub drop_lists: usize,
}

/// A proxy to moto that injects [`Faults`] and counts requests.
pub struct Proxy {
    pub addr: SocketAddr,
    pub faults: Arc<Mutex<Faults>>,
    pub changes: Arc<AtomicUsize>,
    pub lists: Arc<AtomicUsize>,
    /// When each ChangeResourceRecordSets arrived.
    pub change_times: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(faults));
        let changes = Arc::new(AtomicUsize::new(0));
        let lists = Arc::new(AtomicUsize::new(0));
        let change_times = Arc::new(Mutex::new(Vec::new()));
        let (f, c, l, t) = (
            faults.clone(),
            changes.clone(),
            lists.clone(),
            change_times.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (f, c, l, t) = (f.clone(), c.clone(), l.clone(), t.clone());
                tokio::spawn(async move {
                    let _ = handle(conn, upstream, f, c, l, t).await;
                });
            }
        });
        Proxy {
            addr,
            faults,
            changes,
            lists,
            change_times,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

const THROTTLED: &str = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>test</RequestId></ErrorResponse>";
const FAILED: &str = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>injected</Message></Error><RequestId>test</RequestId></ErrorResponse>";

async fn handle(
    mut conn: TcpStream,
    upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    changes: Arc<AtomicUsize>,
    lists: Arc<AtomicUsize>,
    times: Arc<Mutex<Vec<Instant>>>,
) -> std::io::Result<()> {
    // One request per connection.
    let Some(request) = read_request(&mut conn, &mut Vec::new()).await? else {
        return Ok(());
    };
    let request_line = request.request_line().to_string();
    let is_rrset = request_line.contains("/rrset");
    let is_change = is_rrset && request_line.starts_with("POST");
    let is_list = is_rrset && request_line.starts_with("GET");
    let reply = {
        let mut f = faults.lock().unwrap();
        if is_change {
            changes.fetch_add(1, Ordering::SeqCst);
            times.lock().unwrap().push(Instant::now());
            if f.throttle_changes > 0 {
                f.throttle_changes -= 1;
                Some((400, THROTTLED))
            } else if f.fail_changes > 0 {
                f.fail_changes -= 1;
                Some((500, FAILED))
            } else {
                None
            }
        } else if is_list {
            lists.fetch_add(1, Ordering::SeqCst);
            if f.drop_lists > 0 {
                f.drop_lists -= 1;
                return Ok(()); // the connection closes with no answer
            }
            None
        } else {
            None
        }
    };
    if let Some((status, body)) = reply {
        let status = format!("{status} Error");
        answer(
            &mut conn,
            &status,
            "Connection: close\r\n",
            "text/xml",
            body,
        )
        .await?;
        return conn.shutdown().await;
    }
    forward(conn, upstream, &request).await
}
