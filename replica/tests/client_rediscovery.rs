//! A client that found the group through its domain and was handed only dead addresses
//! (the replicas restarted at new IPs, and the nameserver had not caught up yet) looks the
//! domain up again instead of failing on the stale list.
//!
//! The nameserver is the replica's own (`dns::server` serving a `dns::zone::Zone`), run
//! here with zones the test swaps: first one whose only member is at a closed port, later
//! the live replica's. Its own file: the DNS server a process asks is process-wide.

mod common;

use concoord::client::{Client, ClientOptions};
use concoord::command::View;
use concoord::dns::zone::{Zone, ZoneInput};
use hickory_proto::rr::Name;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOMAIN: &str = "moving.test";

fn zone_with(member: &str, round: u64) -> Arc<Zone> {
    let mut view = View::founded_by(member);
    view.number = round;
    let ips = BTreeMap::from([(1, vec![[127, 0, 0, 1].into()])]);
    let input = ZoneInput {
        view,
        leader: Some(1),
        round,
        ips,
        withdrawn: false,
    };
    let domain = Name::from_ascii(DOMAIN).unwrap_or_else(|e| panic!("{DOMAIN}: {e}"));
    Arc::new(Zone::build(&domain, &input).unwrap_or_else(|e| panic!("zone: {e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_only_dead_addresses_looks_the_domain_up_again() {
    let cluster = common::Cluster::start(1).await;
    let live = cluster.addrs();
    let dead = format!("127.0.0.1:{}", common::free_ports(1)[0]);

    let sockets = concoord::dns::server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap_or_else(|e| panic!("bind the nameserver: {e}"));
    let (zones, zone) = tokio::sync::watch::channel(zone_with(&dead, 1));
    let listening = sockets.serve(zone);
    let server = listening.addr;
    tokio::spawn(listening.run());
    concoord::dns::discover::use_server(server);

    // The stale answer is all there is for the first moments; then the nameserver learns
    // where the replica is now.
    let swap = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = zones.send(zone_with(&live, 2));
    });
    let started = Instant::now();
    let opts = ClientOptions {
        failover_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    let client = match Client::connect(DOMAIN, opts).await {
        Ok(c) => c,
        Err(e) => panic!("the client gave up on the stale list instead of looking again: {e}"),
    };
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "connected before the zone changed ({took:?}): the dead address was not dead?"
    );
    let value = client
        .call("counter", "increment", vec![])
        .await
        .unwrap_or_else(|e| panic!("increment through the rediscovered replica: {e}"));
    println!("connected {took:?} after start through a second lookup; increment -> {value:?}");
    let _ = swap.await;

    // A fixed address list has no second source: dead addresses fail at once, as before.
    let started = Instant::now();
    let e = Client::connect(&dead, ClientOptions::default()).await;
    let Err(e) = e else {
        panic!("connected to a closed port")
    };
    assert!(e.to_string().contains("no replica reachable"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
