//! The zone a nameserver answers from, built from the current view: a pure function, so
//! every record a replica serves can be tested from a `View` alone.
//!
//! For domain `d` and members `{id: host:port}` the zone holds:
//! - `d` SOA (serial grows with the view), NS `ns<id>.d` per member, A/AAAA of every member,
//!   TXT one string per node: `id=<id> role=<leader|replica|learner> addr=<host:port>`;
//! - `_concoord._tcp.d` SRV `<priority> <weight> <port> r<id>.d` per member (the leader
//!   first: priority 0, the others 10);
//! - `r<id>.d` and `ns<id>.d` A/AAAA: the member's addresses.

use super::DnsError;
use crate::command::{ReplicaId, View};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Seconds resolvers may cache our answers: short, because membership changes.
pub const TTL: u32 = 5;
/// The SRV service label the clients look up.
pub const SRV_LABELS: [&str; 2] = ["_concoord", "_tcp"];
const LEADER_PRIORITY: u16 = 0;
const FOLLOWER_PRIORITY: u16 = 10;
const WEIGHT: u16 = 100;

/// What the zone is built from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneInput {
    pub view: View,
    /// The leader this replica follows, if it knows one.
    pub leader: Option<ReplicaId>,
    /// The leader's ballot round: leadership changes inside a view also raise the serial.
    pub round: u64,
    /// Each member's IP addresses (members without any get no address records).
    pub ips: BTreeMap<ReplicaId, Vec<IpAddr>>,
    /// This replica left the view or halted: it refuses every question about the zone.
    pub withdrawn: bool,
}

/// The records of one name and type, with what goes in the additional section.
#[derive(Clone, Debug, Default)]
pub struct RecordSet {
    pub records: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// All record sets of one name (an empty map is an empty non-terminal such as `_tcp.d`).
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub sets: BTreeMap<RecordType, RecordSet>,
    /// Every record of the name, for ANY queries.
    pub all: Vec<Record>,
}

/// An authoritative zone, immutable once built; a new view builds a new one.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    serial: u32,
    soa: Record,
    nodes: HashMap<LowerName, Node>,
    withdrawn: bool,
}

impl Zone {
    /// Builds the zone for `domain` (e.g. `counterdomain.com`) from `input`.
    pub fn build(domain: &Name, input: &ZoneInput) -> Result<Zone, DnsError> {
        let origin = domain.to_lowercase();
        let name = |label: String| -> Result<Name, DnsError> {
            Name::from_ascii(&label)
                .and_then(|n| n.append_domain(&origin))
                .map_err(|e| DnsError::Name(format!("{label}.{origin}: {e}")))
        };
        let srv_name = Name::from_labels(SRV_LABELS)
            .and_then(|n| n.append_domain(&origin))
            .map_err(|e| DnsError::Name(format!("_concoord._tcp.{origin}: {e}")))?;
        let serial = serial_of(input.view.number, input.round);
        let primary = input
            .leader
            .filter(|id| input.view.contains(*id))
            .or_else(|| input.view.members.keys().next().copied())
            .unwrap_or(1);
        let soa = Record::from_rdata(
            origin.clone(),
            TTL,
            RData::SOA(SOA::new(
                name(format!("ns{primary}"))?,
                name("hostmaster".into())?,
                serial,
                60,
                30,
                600,
                TTL,
            )),
        );

        let mut sets: BTreeMap<(Name, RecordType), Vec<Record>> = BTreeMap::new();
        let mut add = |owner: &Name, data: RData| {
            let rtype = data.record_type();
            let list = sets.entry((owner.clone(), rtype)).or_default();
            let record = Record::from_rdata(owner.clone(), TTL, data);
            // A set holds no duplicates (two replicas may share an IP).
            if !list.contains(&record) {
                list.push(record);
            }
        };
        add(&origin, soa.data.clone());
        for (&id, addr) in &input.view.members {
            let ips = input.ips.get(&id).map(Vec::as_slice).unwrap_or_default();
            let r_name = name(format!("r{id}"))?;
            let ns_name = name(format!("ns{id}"))?;
            for ip in ips {
                let data = address_rdata(*ip);
                add(&origin, data.clone());
                add(&r_name, data.clone());
                add(&ns_name, data);
            }
            add(&origin, RData::NS(NS(ns_name)));
            let role = if input.leader == Some(id) {
                "leader"
            } else {
                "replica"
            };
            add(
                &origin,
                RData::TXT(TXT::new(vec![format!("id={id} role={role} addr={addr}")])),
            );
            if let Some(port) = port_of(addr) {
                let priority = if input.leader == Some(id) {
                    LEADER_PRIORITY
                } else {
                    FOLLOWER_PRIORITY
                };
                add(
                    &srv_name,
                    RData::SRV(SRV::new(priority, WEIGHT, port, r_name.clone())),
                );
            }
        }

        // Learners (added, still catching up, not voting) are nodes too, but no target yet.
        for (&id, addr) in &input.view.learners {
            add(
                &origin,
                RData::TXT(TXT::new(vec![format!("id={id} role=learner addr={addr}")])),
            );
        }

        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        for ((owner, rtype), records) in &sets {
            let node = nodes.entry(LowerName::new(owner)).or_default();
            node.all.extend(records.iter().cloned());
            node.sets.insert(
                *rtype,
                RecordSet {
                    records: records.clone(),
                    additionals: Vec::new(),
                },
            );
        }
        // Targets' addresses ride along with SRV and NS answers, as BIND does.
        for (rtype, target_of) in [
            (RecordType::SRV, srv_target as fn(&Record) -> Option<&Name>),
            (RecordType::NS, ns_target),
        ] {
            let owners: Vec<LowerName> = nodes
                .iter()
                .filter(|(_, n)| n.sets.contains_key(&rtype))
                .map(|(k, _)| k.clone())
                .collect();
            for owner in owners {
                let targets: Vec<Name> = nodes
                    .get(&owner)
                    .and_then(|n| n.sets.get(&rtype))
                    .map(|s| s.records.iter().filter_map(target_of).cloned().collect())
                    .unwrap_or_default();
                let mut extra = Vec::new();
                for target in &targets {
                    if let Some(t) = nodes.get(&LowerName::new(target)) {
                        for kind in [RecordType::A, RecordType::AAAA] {
                            if let Some(s) = t.sets.get(&kind) {
                                extra.extend(s.records.iter().cloned());
                            }
                        }
                    }
                }
                if let Some(set) = nodes.get_mut(&owner).and_then(|n| n.sets.get_mut(&rtype)) {
                    set.additionals = extra;
                }
            }
        }
        // Names between the apex and the SRV owner exist (NODATA, not NXDOMAIN).
        let mut parent = srv_name.base_name();
        while parent.num_labels() > origin.num_labels() {
            nodes.entry(LowerName::new(&parent)).or_default();
            parent = parent.base_name();
        }

        Ok(Zone {
            lower_origin: LowerName::new(&origin),
            origin,
            serial,
            soa,
            nodes,
            withdrawn: input.withdrawn,
        })
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn lower_origin(&self) -> &LowerName {
        &self.lower_origin
    }

    /// Refused, whole: the replica is no longer a member (see [`ZoneInput::withdrawn`]).
    pub fn withdrawn(&self) -> bool {
        self.withdrawn
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The SOA record (authority section of negative answers).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every record set, sorted by name and type (Route53 sync, tests).
    pub fn record_sets(&self) -> Vec<(&Name, RecordType, &[Record])> {
        let mut out: Vec<(&Name, RecordType, &[Record])> = self
            .nodes
            .values()
            .flat_map(|n| n.sets.iter())
            .filter_map(|(t, s)| {
                s.records
                    .first()
                    .map(|r| (&r.name, *t, s.records.as_slice()))
            })
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// Same records as `other`, ignoring the SOA serial (nothing to republish).
    pub fn same_records(&self, other: &Zone) -> bool {
        let strip = |z: &Zone| -> Vec<(Name, RecordType, Vec<Record>)> {
            z.record_sets()
                .into_iter()
                .filter(|(_, t, _)| *t != RecordType::SOA)
                .map(|(n, t, r)| (n.clone(), t, r.to_vec()))
                .collect()
        };
        self.origin == other.origin && strip(self) == strip(other)
    }
}

/// Grows with the view; a leader change inside a view (a higher round) raises it too.
pub fn serial_of(view: u64, round: u64) -> u32 {
    (view.wrapping_mul(1000).wrapping_add(round.min(999)) % (1 << 32)) as u32
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

fn srv_target(r: &Record) -> Option<&Name> {
    match &r.data {
        RData::SRV(srv) => Some(&srv.target),
        _ => None,
    }
}

fn ns_target(r: &Record) -> Option<&Name> {
    match &r.data {
        RData::NS(ns) => Some(&ns.0),
        _ => None,
    }
}

/// The port of `host:port` (`[v6]:port` too).
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The host of `host:port`, without the brackets of `[v6]:port`.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Parses a domain given on the command line (`counterdomain.com`, trailing dot optional).
pub fn parse_domain(domain: &str) -> Result<Name, DnsError> {
    let trimmed = domain.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err(DnsError::Name(format!(
            "{domain:?}: expected a domain such as counterdomain.com"
        )));
    }
    let mut name = Name::from_ascii(trimmed)
        .map_err(|e| DnsError::Name(format!("{domain:?}: {e}")))?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}
