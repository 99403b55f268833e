//! A 3-replica cluster serving its domain (`-n`): every record type, over UDP and TCP, from
//! every replica, through hickory-resolver, raw messages and dig; the zone following the
//! view as replicas are added and removed; clients and joiners finding the group by SRV.

mod dns_support;

use dns_support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RData, RecordType};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const SRV: &str = "_concoord._tcp.counterdomain.com.";
const APEX: &str = "counterdomain.com.";

/// The SRV targets and ports `server` lists now, as `name:port`.
async fn srv_targets(server: SocketAddr) -> BTreeSet<String> {
    let m = ask(
        server,
        SRV,
        RecordType::SRV,
        DNSClass::IN,
        false,
        Some(1232),
    )
    .await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(format!("{}:{}", s.target, s.port)),
            _ => None,
        })
        .collect()
}

/// What the cluster should list: `r<id>.counterdomain.com.:port` per member.
async fn expected_targets(c: &DnsCluster, members: usize) -> BTreeSet<String> {
    let s = c.wait_for_members(members).await;
    s.view
        .members
        .iter()
        .map(|(id, addr)| {
            let port = addr.rsplit_once(':').unwrap().1;
            format!("r{id}.counterdomain.com.:{port}")
        })
        .collect()
}

async fn serial(server: SocketAddr) -> u32 {
    let m = ask(server, APEX, RecordType::SOA, DNSClass::IN, false, None).await;
    match &m.answers[0].data {
        RData::SOA(s) => s.serial,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_from_every_replica_of_a_three_replica_cluster() {
    let c = DnsCluster::start(3).await;
    let want = expected_targets(&c, 3).await;
    let status = c.wait_for_members(3).await;
    let leader = status.leader.unwrap();
    for r in c.live() {
        let server = r.dns();
        eventually(Duration::from_secs(5), "SRV lists 3", || async {
            srv_targets(server).await == want
        })
        .await;

        // hickory-resolver, as an application would ask.
        let res = resolver(server);
        let ips: BTreeSet<String> = res
            .lookup(APEX, RecordType::A)
            .await
            .unwrap()
            .answers()
            .iter()
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(
            ips,
            ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
                .map(String::from)
                .into()
        );
        let srv = res.lookup(SRV, RecordType::SRV).await.unwrap();
        assert_eq!(srv.answers().len(), 3);
        // Targets' addresses ride in the additional section.
        let glue: BTreeSet<String> = srv
            .additionals()
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(
            glue,
            [
                "r1.counterdomain.com.",
                "r2.counterdomain.com.",
                "r3.counterdomain.com."
            ]
            .map(String::from)
            .into()
        );
        // The leader is listed first (lowest priority).
        let first = srv
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.priority, s.target.to_string())),
                _ => None,
            })
            .min()
            .unwrap();
        assert_eq!(first, (0, format!("r{leader}.counterdomain.com.")));
        let txt: Vec<String> = res
            .lookup(APEX, RecordType::TXT)
            .await
            .unwrap()
            .answers()
            .iter()
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(txt.len(), 3, "{txt:?}");
        assert_eq!(
            txt.iter().filter(|t| t.contains("role=leader")).count(),
            1,
            "{txt:?}"
        );
        for m in c.live() {
            assert!(
                txt.iter()
                    .any(|t| t.contains(&format!("addr={}", m.addr()))),
                "{txt:?}"
            );
        }
        let ns = res.lookup(APEX, RecordType::NS).await.unwrap();
        assert_eq!(ns.answers().len(), 3);
        for target in ["ns1", "ns2", "ns3"] {
            let a = res
                .lookup(format!("{target}.counterdomain.com."), RecordType::A)
                .await
                .unwrap();
            assert_eq!(a.answers().len(), 1, "{target} resolves");
        }
        let r2 = res
            .lookup("r2.counterdomain.com.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(r2.answers()[0].data.to_string(), "127.0.0.12");
        assert!(serial(server).await >= 3000);

        // Codes and flags, over UDP and TCP.
        for tcp in [false, true] {
            let a = ask(server, APEX, RecordType::A, DNSClass::IN, tcp, None).await;
            assert_eq!(a.metadata.response_code, ResponseCode::NoError);
            assert!(a.metadata.authoritative);
            assert_eq!(a.answers.len(), 3);
            let nx = ask(
                server,
                "nosuch.counterdomain.com.",
                RecordType::A,
                DNSClass::IN,
                tcp,
                None,
            )
            .await;
            assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
            let nodata = ask(
                server,
                "r1.counterdomain.com.",
                RecordType::MX,
                DNSClass::IN,
                tcp,
                None,
            )
            .await;
            assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
            assert!(nodata.answers.is_empty());
            assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
            let refused = ask(
                server,
                "example.org.",
                RecordType::A,
                DNSClass::IN,
                tcp,
                None,
            )
            .await;
            assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        }

        // dig, the seed's tool, when installed.
        if let Some(out) = dig(server, &["+short", "-t", "srv", SRV]) {
            assert_eq!(out.lines().count(), 3, "{out}");
            let a = dig(server, &["+short", "-t", "a", APEX]).unwrap_or_default();
            assert_eq!(a.lines().count(), 3, "{a}");
            let txt = dig(server, &["+short", "-t", "txt", APEX]).unwrap_or_default();
            assert!(txt.contains("role=leader"), "{txt}");
            let ns = dig(server, &["+short", "-t", "ns", APEX]).unwrap_or_default();
            assert_eq!(ns.lines().count(), 3, "{ns}");
            let soa = dig(server, &["+short", "-t", "soa", APEX]).unwrap_or_default();
            assert!(soa.contains("hostmaster.counterdomain.com."), "{soa}");
            let tcp = dig(server, &["+tcp", "+short", "-t", "srv", SRV]).unwrap_or_default();
            assert_eq!(tcp.lines().count(), 3, "{tcp}");
            let full = dig(server, &["-t", "srv", SRV]).unwrap_or_default();
            assert!(full.contains("flags: qr aa"), "{full}");
            assert!(
                full.contains("ADDITIONAL: 4"),
                "3 A records and the OPT: {full}"
            );
            let nx = dig(server, &["nosuch.counterdomain.com"]).unwrap_or_default();
            assert!(nx.contains("status: NXDOMAIN"), "{nx}");
            let other = dig(server, &["example.org"]).unwrap_or_default();
            assert!(other.contains("status: REFUSED"), "{other}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zone_follows_replicas_added_and_removed_within_a_second() {
    let mut c = DnsCluster::start(3).await;
    let three = expected_targets(&c, 3).await;
    for r in c.live() {
        let s = r.dns();
        eventually(Duration::from_secs(5), "3 members", || async {
            srv_targets(s).await == three
        })
        .await;
    }
    let before = serial(c.replicas[0].dns()).await;

    // Add a fourth: every nameserver (the new one too) lists it within a second of the view.
    c.add(&[], &[]).await;
    let four = expected_targets(&c, 4).await;
    for r in c.live() {
        let s = r.dns();
        let took = eventually(
            Duration::from_secs(1),
            "the added replica in DNS",
            || async { srv_targets(s).await == four },
        )
        .await;
        eprintln!("{s}: zone followed the added replica in {took:?}");
    }
    let added = serial(c.replicas[0].dns()).await;
    assert!(added > before, "serial {added} after {before}");
    let a = ask(
        c.replicas[1].dns(),
        "r4.counterdomain.com.",
        RecordType::A,
        DNSClass::IN,
        false,
        None,
    )
    .await;
    assert_eq!(a.answers[0].data.to_string(), "127.0.0.14");

    // Remove the second replica through the membership API.
    let removed = c.replicas[1].addr();
    concoord::client::remove_member(&c.addrs(), &removed, Duration::from_secs(20))
        .await
        .expect("remove a member");
    let three = expected_targets(&c, 3).await;
    for i in [0, 2, 3] {
        let s = c.replicas[i].dns();
        let took = eventually(
            Duration::from_secs(1),
            "the removed replica gone from DNS",
            || async { srv_targets(s).await == three },
        )
        .await;
        eprintln!("{s}: zone followed the removal in {took:?}");
        let a = ask(s, APEX, RecordType::A, DNSClass::IN, false, None).await;
        let ips: BTreeSet<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
        assert!(!ips.contains("127.0.0.12"), "{ips:?}");
        let gone = ask(
            s,
            "r2.counterdomain.com.",
            RecordType::A,
            DNSClass::IN,
            false,
            None,
        )
        .await;
        assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    }
    assert!(serial(c.replicas[0].dns()).await > added);
    if let Some(out) = dig(c.replicas[3].dns(), &["+short", "-t", "txt", APEX]) {
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(!out.contains(&removed), "{out}");
    }
    // The removed replica knows it left: its status says so, and its nameserver refuses
    // the zone rather than keep serving the last view it had.
    let gone = c.replicas[1].dns();
    let took = eventually(
        Duration::from_secs(5),
        "the removed replica refuses its zone",
        || async {
            let srv = ask(gone, SRV, RecordType::SRV, DNSClass::IN, false, None).await;
            srv.metadata.response_code == ResponseCode::Refused && srv.answers.is_empty()
        },
    )
    .await;
    eprintln!("{gone}: the removed replica refused its zone after {took:?}");
    assert_eq!(
        c.status(1).await.map(|s| s.state),
        Some("removed".to_string())
    );
    if let Some(out) = dig(gone, &["-t", "srv", SRV]) {
        assert!(out.contains("status: REFUSED"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_joining_replicas_find_the_group_through_srv() {
    let mut c = DnsCluster::start(3).await;
    let server = c.replicas[0].dns();
    let want = expected_targets(&c, 3).await;
    eventually(Duration::from_secs(5), "SRV lists 3", || async {
        srv_targets(server).await == want
    })
    .await;

    // The library: SRV targets as ip:port, leader first.
    let found = concoord::dns::discover::members(DOMAIN, Some(&server.to_string()))
        .await
        .unwrap();
    let leader = c.wait_for_members(3).await;
    assert_eq!(found.len(), 3);
    assert_eq!(found[0], leader.addr);

    // `concoord call DOMAIN ...`, with --dns-server and with the environment variable.
    let call = |args: &[&str], env: Option<String>| {
        let mut cmd = Command::new(BIN);
        cmd.arg("call").args(args);
        if let Some(s) = env {
            cmd.env("CONCOORD_DNS_SERVER", s);
        }
        cmd.output().unwrap()
    };
    let out = call(
        &[
            "--dns-server",
            &server.to_string(),
            DOMAIN,
            "counter",
            "increment",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = call(&[DOMAIN, "counter", "getvalue"], Some(server.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let out = call(
        &[
            "--dns-server",
            "127.0.0.1:1",
            "nosuch.example",
            "counter",
            "getvalue",
        ],
        None,
    );
    assert!(!out.status.success());

    // `concoord replica -b DOMAIN` joins through the SRV records.
    let ip = "127.0.0.14";
    let port = free_port(ip);
    let dns_port = free_port(ip);
    let child = spawn(
        ip,
        port,
        dns_port,
        Some(DOMAIN),
        &[],
        &[("CONCOORD_DNS_SERVER", server.to_string())],
    );
    c.replicas.push(DnsReplica {
        ip: ip.into(),
        port,
        dns_port,
        child: Some(child),
    });
    let s = c.wait_for_members(4).await;
    assert!(
        s.view
            .members
            .values()
            .any(|a| a == &format!("{ip}:{port}"))
    );
}
