//! Hostile and odd DNS input against a nameserver (the library's, in this process, serving a
//! zone of 60 members): each gets a sensible answer or none, large answers truncate over UDP
//! and come whole over TCP, and the server keeps answering throughout.

mod dns_support;

use concoord::command::View;
use concoord::dns::zone::{Zone, ZoneInput, parse_domain};
use dns_support::{ask, exchange_tcp, exchange_udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const MEMBERS: u64 = 60;

async fn serve() -> (SocketAddr, watch::Sender<Arc<Zone>>) {
    let members: BTreeMap<u64, String> = (1..=MEMBERS)
        .map(|i| (i, format!("10.9.{}.{}:{}", i / 200, i % 200 + 1, 14000 + i)))
        .collect();
    let ips = members
        .iter()
        .map(|(i, a)| {
            let host = a.rsplit_once(':').unwrap().0;
            (*i, vec![host.parse::<IpAddr>().unwrap()])
        })
        .collect();
    let input = ZoneInput {
        view: View {
            number: 7,
            members,
            next_id: MEMBERS + 1,
            learners: BTreeMap::new(),
            group: 0,
        },
        leader: Some(1),
        round: 1,
        ips,
        withdrawn: false,
    };
    let zone = Zone::build(&parse_domain("counterdomain.com").unwrap(), &input).unwrap();
    let (tx, rx) = watch::channel(Arc::new(zone));
    let sockets = concoord::dns::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listening = sockets.serve(rx);
    let addr = listening.addr;
    tokio::spawn(listening.run());
    (addr, tx)
}

async fn still_answers(server: SocketAddr) {
    for tcp in [false, true] {
        let m = ask(
            server,
            "r1.counterdomain.com.",
            RecordType::A,
            DNSClass::IN,
            tcp,
            None,
        )
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
    }
}

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn question(name: &str, rtype: u16, class: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_answering() {
    let (server, _zone) = serve().await;
    still_answers(server).await;

    // Too short for a header: dropped.
    assert_eq!(exchange_udp(server, &[1, 2, 3]).await, None);
    // Random bytes with a query header: FORMERR, or REFUSED when they happen to decode as a
    // question outside the zone; never a crash.
    let mut junk = header(7, 0x0100, 1, 0, 0, 0);
    junk.extend((0..200).map(|i| (i * 37 % 251) as u8));
    if let Some(r) = exchange_udp(server, &junk).await {
        assert!(matches!(rcode(&r), 1 | 5), "rcode {}", rcode(&r));
    }
    // Claims a question that is not there.
    let r = exchange_udp(server, &header(8, 0x0100, 1, 0, 0, 0))
        .await
        .unwrap();
    assert_eq!((r[0], r[1], rcode(&r)), (0, 8, 1));
    // A compression pointer pointing at itself.
    let mut lp = header(9, 0x0100, 1, 0, 0, 0);
    lp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let r = exchange_udp(server, &lp).await.unwrap();
    assert_eq!(rcode(&r), 1);
    // A label longer than 63 bytes.
    let mut long = header(10, 0x0100, 1, 0, 0, 0);
    long.push(64);
    long.extend(std::iter::repeat_n(b'a', 64));
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode(&exchange_udp(server, &long).await.unwrap()), 1);
    // A response sent to us is not answered (no reflection).
    let mut resp = header(11, 0x8400, 1, 0, 0, 0);
    resp.extend(question("counterdomain.com", 1, 1));
    assert_eq!(exchange_udp(server, &resp).await, None);
    // Two questions: FORMERR.
    let mut two = header(12, 0x0100, 2, 0, 0, 0);
    two.extend(question("counterdomain.com", 1, 1));
    two.extend(question("counterdomain.com", 16, 1));
    assert_eq!(rcode(&exchange_udp(server, &two).await.unwrap()), 1);
    // Opcode UPDATE and STATUS: not implemented.
    for opcode in [2u16, 5] {
        let mut up = header(13, opcode << 11, 1, 0, 0, 0);
        up.extend(question("counterdomain.com", 6, 1));
        assert_eq!(
            rcode(&exchange_udp(server, &up).await.unwrap()),
            4,
            "opcode {opcode}"
        );
    }
    // Unknown and CHAOS classes: refused.
    for class in [999u16, 3] {
        let mut q = header(14, 0x0100, 1, 0, 0, 0);
        q.extend(question("counterdomain.com", 16, class));
        assert_eq!(
            rcode(&exchange_udp(server, &q).await.unwrap()),
            5,
            "class {class}"
        );
    }
    let m = ask(
        server,
        "version.bind.",
        RecordType::TXT,
        DNSClass::CH,
        false,
        None,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // An unknown type for a known name: NODATA.
    let mut q = header(15, 0x0100, 1, 0, 0, 0);
    q.extend(question("counterdomain.com", 65000, 1));
    let r = exchange_udp(server, &q).await.unwrap();
    assert_eq!((rcode(&r), r[7]), (0, 0));
    // EDNS version 1: BADVERS.
    let mut q = header(16, 0x0100, 1, 0, 0, 1);
    q.extend(question("counterdomain.com", 1, 1));
    q.extend_from_slice(&[0, 0, 41, 4, 0, 0, 1, 0, 0, 0, 0]);
    let r = Message::from_vec(&exchange_udp(server, &q).await.unwrap()).unwrap();
    // 16 decodes as BADSIG too (the two codes share the value).
    assert!(matches!(
        r.metadata.response_code,
        ResponseCode::BADVERS | ResponseCode::BADSIG
    ));
    // Zone transfers are refused.
    let m = ask(
        server,
        "counterdomain.com.",
        RecordType::AXFR,
        DNSClass::IN,
        true,
        None,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    still_answers(server).await;

    // Oversized: a 4000-byte datagram and a 65535-byte TCP message of junk.
    let mut big = header(17, 0x0100, 1, 0, 0, 0);
    big.extend(std::iter::repeat_n(0x3fu8, 4000));
    if let Some(r) = exchange_udp(server, &big).await {
        assert_eq!(rcode(&r), 1);
    }
    let mut huge = header(18, 0x0100, 1, 0, 0, 0);
    huge.resize(65535, 0x3f);
    if let Some(r) = exchange_tcp(server, &huge).await {
        assert_eq!(rcode(&r), 1);
    }
    // TCP: a length prefix and then nothing, a length with half a message, garbage.
    for bytes in [&[0u8, 40][..], &[0, 40, 1, 2, 3], b"GET / HTTP/1.1\r\n\r\n"] {
        let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
        s.write_all(bytes).await.unwrap();
        drop(s);
    }
    // Many connections that say nothing do not block others.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(server).await.unwrap());
    }
    still_answers(server).await;
    // A flood of garbage datagrams.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..2000u32 {
        let len = (i % 300) as usize;
        let pkt: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
        let _ = sock.send_to(&pkt, server).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_answers(server).await;
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let (server, _zone) = serve().await;
    // 60 TXT records: far more than 512 bytes.
    let udp = ask(
        server,
        "counterdomain.com.",
        RecordType::TXT,
        DNSClass::IN,
        false,
        None,
    )
    .await;
    assert!(udp.metadata.truncation, "TC set over UDP");
    assert!(udp.answers.len() < MEMBERS as usize);
    let raw = exchange_udp(server, &{
        let mut q = header(3, 0x0100, 1, 0, 0, 0);
        q.extend(question("counterdomain.com", 16, 1));
        q
    })
    .await
    .unwrap();
    assert!(raw.len() <= 512, "{} bytes without EDNS", raw.len());
    // With EDNS the client may take more, but never above 1232 bytes from us.
    let edns = ask(
        server,
        "counterdomain.com.",
        RecordType::TXT,
        DNSClass::IN,
        false,
        Some(4096),
    )
    .await;
    assert!(edns.metadata.truncation);
    assert!(edns.answers.len() > udp.answers.len());
    let tcp = ask(
        server,
        "counterdomain.com.",
        RecordType::TXT,
        DNSClass::IN,
        true,
        None,
    )
    .await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), MEMBERS as usize);
    let srv = ask(
        server,
        "_concoord._tcp.counterdomain.com.",
        RecordType::SRV,
        DNSClass::IN,
        true,
        None,
    )
    .await;
    assert_eq!(srv.answers.len(), MEMBERS as usize);
    assert_eq!(srv.additionals.len(), MEMBERS as usize);
    // hickory-resolver retries over TCP on truncation and gets everything.
    let res = dns_support::resolver(server);
    let all = res
        .lookup("counterdomain.com.", RecordType::TXT)
        .await
        .unwrap();
    assert_eq!(all.answers().len(), MEMBERS as usize);
    // And dig does the same.
    if let Some(out) = dns_support::dig(server, &["+short", "-t", "txt", "counterdomain.com"]) {
        assert_eq!(out.lines().count(), MEMBERS as usize, "{out}");
    }
    // Several queries pipelined on one TCP connection are all answered.
    let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
    let mut batch = Vec::new();
    for id in 0..20u16 {
        let mut q = header(id, 0x0100, 1, 0, 0, 0);
        q.extend(question("r1.counterdomain.com", 1, 1));
        batch.extend((q.len() as u16).to_be_bytes());
        batch.extend(q);
    }
    s.write_all(&batch).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.unwrap();
        ids.push(u16::from_be_bytes([buf[0], buf[1]]));
    }
    ids.sort();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_zone_is_served_at_once_and_repeated_questions_keep_their_spelling() {
    let (server, zone) = serve().await;
    // The same question again and again (answered from the cache after the first), in
    // different spellings: each answer carries the asker's ID and spelling.
    for name in [
        "r1.counterdomain.com.",
        "R1.CounterDomain.COM.",
        "r1.counterdomain.com.",
    ] {
        for _ in 0..3 {
            let m = ask(server, name, RecordType::A, DNSClass::IN, false, None).await;
            assert_eq!(m.answers.len(), 1);
            assert_eq!(m.answers[0].data.to_string(), "10.9.0.2");
            assert_eq!(m.queries[0].name().to_ascii(), name);
        }
    }
    let members: BTreeMap<u64, String> = [(1, "10.0.0.1:14000".to_string())].into();
    let input = ZoneInput {
        view: View {
            number: 8,
            members,
            next_id: 2,
            learners: BTreeMap::new(),
            group: 0,
        },
        leader: Some(1),
        round: 1,
        ips: [(1, vec!["10.0.0.1".parse().unwrap()])].into(),
        withdrawn: false,
    };
    zone.send_replace(Arc::new(
        Zone::build(&parse_domain("counterdomain.com").unwrap(), &input).unwrap(),
    ));
    let m = ask(
        server,
        "counterdomain.com.",
        RecordType::A,
        DNSClass::IN,
        false,
        None,
    )
    .await;
    assert_eq!(m.answers.len(), 1);
    let m = ask(
        server,
        "r1.counterdomain.com.",
        RecordType::A,
        DNSClass::IN,
        false,
        None,
    )
    .await;
    assert_eq!(
        m.answers[0].data.to_string(),
        "10.0.0.1",
        "the cached answer was dropped"
    );
    let gone = ask(
        server,
        "r2.counterdomain.com.",
        RecordType::A,
        DNSClass::IN,
        false,
        None,
    )
    .await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
}
