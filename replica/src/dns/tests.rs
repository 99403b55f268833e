//! Zone building and answering, from views alone (no sockets).

use super::answer::answer;
use super::zone::{Zone, ZoneInput, parse_domain, serial_of};
use crate::command::View;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::IpAddr;

fn view(number: u64, members: &[(u64, &str)]) -> View {
    View {
        number,
        members: members.iter().map(|(i, a)| (*i, a.to_string())).collect(),
        next_id: members.iter().map(|(i, _)| i + 1).max().unwrap_or(1),
        learners: BTreeMap::new(),
        group: 0,
    }
}

fn input(v: View, leader: Option<u64>) -> ZoneInput {
    let ips = v
        .members
        .iter()
        .map(|(id, a)| {
            let host = super::zone::host_of(a);
            let ip: Vec<IpAddr> = host.parse().ok().into_iter().collect();
            (*id, ip)
        })
        .collect::<BTreeMap<_, _>>();
    ZoneInput {
        view: v,
        leader,
        round: 1,
        ips,
        withdrawn: false,
    }
}

fn zone(v: View, leader: Option<u64>) -> Zone {
    Zone::build(
        &parse_domain("CounterDomain.com").unwrap(),
        &input(v, leader),
    )
    .unwrap()
}

fn ask<'z>(z: &'z Zone, name: &str, t: RecordType) -> super::answer::Answer<'z> {
    answer(
        z,
        &LowerName::from(Name::from_ascii(name).unwrap()),
        t,
        DNSClass::IN,
    )
}

fn strings(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

fn three() -> View {
    view(
        3,
        &[
            (1, "10.0.0.1:14000"),
            (2, "10.0.0.2:14001"),
            (3, "10.0.0.3:14002"),
        ],
    )
}

#[test]
fn every_record_type_of_a_three_member_view() {
    let z = zone(three(), Some(2));
    let a = ask(&z, "counterdomain.com.", RecordType::A);
    assert_eq!(a.code, ResponseCode::NoError);
    assert!(a.authoritative);
    assert_eq!(strings(a.answers), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);

    let srv = ask(&z, "_concoord._tcp.counterdomain.com.", RecordType::SRV);
    assert_eq!(
        strings(srv.answers),
        [
            "0 100 14001 r2.counterdomain.com.",
            "10 100 14000 r1.counterdomain.com.",
            "10 100 14002 r3.counterdomain.com."
        ]
    );
    // The targets' addresses come along, as BIND sends them.
    assert_eq!(
        strings(srv.additionals),
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    );
    let r2 = ask(&z, "r2.counterdomain.com.", RecordType::A);
    assert_eq!(strings(r2.answers), ["10.0.0.2"]);

    let txt = ask(&z, "counterdomain.com.", RecordType::TXT);
    assert_eq!(
        strings(txt.answers),
        [
            "id=1 role=replica addr=10.0.0.1:14000",
            "id=2 role=leader addr=10.0.0.2:14001",
            "id=3 role=replica addr=10.0.0.3:14002"
        ]
    );
    let ns = ask(&z, "counterdomain.com.", RecordType::NS);
    assert_eq!(
        strings(ns.answers),
        [
            "ns1.counterdomain.com.",
            "ns2.counterdomain.com.",
            "ns3.counterdomain.com."
        ]
    );
    assert_eq!(ns.additionals.len(), 3);
    assert_eq!(
        strings(ask(&z, "ns3.counterdomain.com.", RecordType::A).answers),
        ["10.0.0.3"]
    );
    let soa = ask(&z, "counterdomain.com.", RecordType::SOA);
    match &soa.answers[0].data {
        RData::SOA(s) => {
            assert_eq!(s.serial, serial_of(3, 1));
            assert_eq!(s.mname.to_ascii(), "ns2.counterdomain.com.");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ask(&z, "counterdomain.com.", RecordType::ANY).answers.len(),
        10,
        "SOA, 3 NS, 3 A, 3 TXT"
    );
}

#[test]
fn a_replica_that_left_the_group_refuses_its_whole_zone() {
    let domain = parse_domain("CounterDomain.com").unwrap();
    let gone = Zone::build(
        &domain,
        &ZoneInput {
            withdrawn: true,
            ..input(three(), Some(1))
        },
    )
    .unwrap();
    for (name, rtype) in [
        ("counterdomain.com.", RecordType::SOA),
        ("_concoord._tcp.counterdomain.com.", RecordType::SRV),
        ("r1.counterdomain.com.", RecordType::A),
        ("nosuch.counterdomain.com.", RecordType::A),
    ] {
        let a = ask(&gone, name, rtype);
        assert_eq!(a.code, ResponseCode::Refused, "{name} {rtype}");
        assert!(!a.authoritative && a.answers.is_empty());
    }
    // The same view, still a member: answered.
    let z = zone(three(), Some(1));
    assert_eq!(
        ask(&z, "_concoord._tcp.counterdomain.com.", RecordType::SRV)
            .answers
            .len(),
        3
    );
}

#[test]
fn negative_answers_carry_the_soa_and_foreign_names_are_refused() {
    let z = zone(three(), Some(1));
    let nx = ask(&z, "nosuch.counterdomain.com.", RecordType::A);
    assert_eq!(nx.code, ResponseCode::NXDomain);
    assert!(nx.authoritative && nx.answers.is_empty());
    assert!(nx.soa.is_some());
    let nodata = ask(&z, "r1.counterdomain.com.", RecordType::MX);
    assert_eq!(nodata.code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && nodata.soa.is_some());
    // Between the apex and the SRV owner: exists, without records.
    let ent = ask(&z, "_tcp.counterdomain.com.", RecordType::A);
    assert_eq!((ent.code, ent.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(
        ask(&z, "r9.counterdomain.com.", RecordType::A).code,
        ResponseCode::NXDomain
    );
    // Case does not matter.
    assert_eq!(
        ask(&z, "R1.CounterDomain.COM.", RecordType::A)
            .answers
            .len(),
        1
    );

    let refused = ask(&z, "example.org.", RecordType::A);
    assert_eq!(refused.code, ResponseCode::Refused);
    assert!(!refused.authoritative);
    assert_eq!(ask(&z, "com.", RecordType::NS).code, ResponseCode::Refused);
    assert_eq!(
        ask(&z, "counterdomain.com.", RecordType::AXFR).code,
        ResponseCode::Refused
    );
    let chaos = answer(
        &z,
        &LowerName::from(Name::from_ascii("counterdomain.com.").unwrap()),
        RecordType::TXT,
        DNSClass::CH,
    );
    assert_eq!(chaos.code, ResponseCode::Refused);
    let unknown = answer(
        &z,
        &LowerName::from(Name::from_ascii("counterdomain.com.").unwrap()),
        RecordType::A,
        DNSClass::Unknown(999),
    );
    assert_eq!(unknown.code, ResponseCode::Refused);
}

#[test]
fn adding_and_removing_members_changes_the_zone_and_raises_the_serial() {
    let before = zone(three(), Some(1));
    let mut grown = three();
    grown.number = 4;
    grown.members.insert(4, "10.0.0.4:14003".into());
    let after_add = zone(grown.clone(), Some(1));
    assert!(after_add.serial() > before.serial());
    assert!(!after_add.same_records(&before));
    assert_eq!(
        ask(&after_add, "counterdomain.com.", RecordType::A)
            .answers
            .len(),
        4
    );
    assert_eq!(
        ask(&after_add, "r4.counterdomain.com.", RecordType::A)
            .answers
            .len(),
        1
    );

    let mut shrunk = grown;
    shrunk.number = 5;
    shrunk.members.remove(&2);
    let after_remove = zone(shrunk, Some(1));
    assert!(after_remove.serial() > after_add.serial());
    assert_eq!(
        strings(ask(&after_remove, "counterdomain.com.", RecordType::A).answers),
        ["10.0.0.1", "10.0.0.3", "10.0.0.4"]
    );
    assert_eq!(
        ask(&after_remove, "r2.counterdomain.com.", RecordType::A).code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(
            &after_remove,
            "_concoord._tcp.counterdomain.com.",
            RecordType::SRV
        )
        .answers
        .len(),
        3
    );
    // Same view, same leader: same records (nothing to republish).
    assert!(zone(three(), Some(1)).same_records(&before));
    // A leader change inside a view moves SRV priority and TXT role, and the serial.
    let mut other = input(three(), Some(3));
    other.round = 2;
    let moved = Zone::build(&parse_domain("counterdomain.com").unwrap(), &other).unwrap();
    assert!(moved.serial() > before.serial());
    assert!(!moved.same_records(&before));
}

#[test]
fn shared_ips_host_names_and_ipv6() {
    let v = view(
        2,
        &[
            (1, "127.0.0.1:14000"),
            (2, "127.0.0.1:14001"),
            (3, "[::1]:14002"),
            (4, "pod-3.peers:14003"),
        ],
    );
    let z = zone(v, None);
    // Two replicas on one IP: one A record at the apex; the unresolved name gets none.
    assert_eq!(
        strings(ask(&z, "counterdomain.com.", RecordType::A).answers),
        ["127.0.0.1"]
    );
    assert_eq!(
        strings(ask(&z, "counterdomain.com.", RecordType::AAAA).answers),
        ["::1"]
    );
    assert_eq!(
        ask(&z, "r4.counterdomain.com.", RecordType::A).code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(&z, "_concoord._tcp.counterdomain.com.", RecordType::SRV)
            .answers
            .len(),
        4
    );
    assert!(parse_domain("").is_err());
    assert!(parse_domain("a..b").is_err());
    assert_eq!(
        parse_domain("Example.COM.").unwrap().to_ascii(),
        "example.com."
    );
}

#[test]
fn many_members_make_a_large_answer() {
    let members: Vec<(u64, String)> = (1..=60)
        .map(|i| (i, format!("10.1.0.{i}:{}", 14000 + i)))
        .collect();
    let refs: Vec<(u64, &str)> = members.iter().map(|(i, a)| (*i, a.as_str())).collect();
    let z = zone(view(60, &refs), Some(1));
    assert_eq!(
        ask(&z, "counterdomain.com.", RecordType::TXT).answers.len(),
        60
    );
}
