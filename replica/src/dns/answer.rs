//! How the zone answers one question: a pure function of the zone and the question, kept
//! apart from the server so every outcome (refused, NXDOMAIN, NODATA, answer) is testable.

use super::zone::Zone;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};

/// What goes back for one question.
#[derive(Debug, PartialEq)]
pub struct Answer<'z> {
    pub code: ResponseCode,
    /// Whether we speak with authority (false only for questions we refuse).
    pub authoritative: bool,
    pub answers: &'z [Record],
    pub additionals: &'z [Record],
    /// The SOA, for negative answers (NXDOMAIN and NODATA), so resolvers cache them.
    pub soa: Option<&'z Record>,
}

impl<'z> Answer<'z> {
    fn refused() -> Answer<'z> {
        Answer {
            code: ResponseCode::Refused,
            authoritative: false,
            answers: &[],
            additionals: &[],
            soa: None,
        }
    }

    fn negative(code: ResponseCode, zone: &'z Zone) -> Answer<'z> {
        Answer {
            code,
            authoritative: true,
            answers: &[],
            additionals: &[],
            soa: Some(zone.soa()),
        }
    }
}

/// Answers `name`/`rtype`/`class` from `zone`.
pub fn answer<'z>(
    zone: &'z Zone,
    name: &LowerName,
    rtype: RecordType,
    class: DNSClass,
) -> Answer<'z> {
    // Only the Internet class, and nothing outside our zone: we are no resolver. A replica
    // that left the group (or halted) answers for it no longer: its view is stale.
    if zone.withdrawn()
        || !matches!(class, DNSClass::IN | DNSClass::ANY)
        || !zone.lower_origin().zone_of(name)
    {
        return Answer::refused();
    }
    // No zone transfers: the zone is derived state, each replica builds its own.
    if matches!(rtype, RecordType::AXFR | RecordType::IXFR) {
        return Answer::refused();
    }
    let Some(node) = zone.node(name) else {
        return Answer::negative(ResponseCode::NXDomain, zone);
    };
    let set = if rtype == RecordType::ANY {
        (!node.all.is_empty()).then_some((node.all.as_slice(), &[][..]))
    } else {
        node.sets
            .get(&rtype)
            .map(|s| (s.records.as_slice(), s.additionals.as_slice()))
    };
    match set {
        Some((answers, additionals)) => Answer {
            code: ResponseCode::NoError,
            authoritative: true,
            answers,
            additionals,
            soa: None,
        },
        None => Answer::negative(ResponseCode::NoError, zone),
    }
}
