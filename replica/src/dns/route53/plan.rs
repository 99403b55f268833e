//! What to send to Route53: the record sets we want (from the zone), compared with the
//! record sets the hosted zone has, give one change batch, or nothing when they agree.
//!
//! Only records we own are touched. Ownership is recorded the way ExternalDNS does it: a TXT
//! record (`_concoord-owner.<domain>`) that names the owner and lists the record sets it
//! created, changed in the same batch as those record sets, so the two never disagree.

use crate::dns::zone::Zone;
use hickory_proto::rr::{RData, RecordType};
use std::collections::{BTreeMap, BTreeSet};

/// The label of the ownership record under the domain.
pub const OWNER_LABEL: &str = "_concoord-owner";
const HERITAGE: &str = "heritage=concoord";

/// One record set as Route53 sees it: lower-case absolute name, type, TTL, values in
/// Route53's text form, sorted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordSet {
    pub name: String,
    pub rtype: String,
    pub ttl: i64,
    pub values: Vec<String>,
}

impl RecordSet {
    pub fn new(name: &str, rtype: &str, ttl: i64, mut values: Vec<String>) -> RecordSet {
        values.sort();
        values.dedup();
        RecordSet {
            name: normalize(name),
            rtype: rtype.to_string(),
            ttl,
            values,
        }
    }

    pub fn key(&self) -> (String, String) {
        (self.name.clone(), self.rtype.clone())
    }
}

/// What a change does (Route53's CREATE, UPSERT, DELETE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Upsert,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    pub set: RecordSet,
}

/// The batch to send, and what was left alone because someone else owns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Record sets we want but that exist, different, without our ownership.
    pub conflicts: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{name} says the records belong to owner {other:?}, not {ours:?}; not touching them")]
    OwnedByOther {
        name: String,
        other: String,
        ours: String,
    },
}

/// Lower case with exactly one trailing dot; Route53 escapes `*` as `\052`.
pub fn normalize(name: &str) -> String {
    let mut n = name.trim().to_ascii_lowercase().replace("\\052", "*");
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// The name of the ownership record for `domain`.
pub fn owner_record_name(domain: &str) -> String {
    normalize(&format!("{OWNER_LABEL}.{}", normalize(domain)))
}

/// The record sets Route53 should serve for `zone`: the members' addresses (apex and
/// `r<id>`), the SRV and the TXT. Route53 keeps its own SOA and NS, so ours stay local.
pub fn wanted(zone: &Zone) -> Vec<RecordSet> {
    let mut out = Vec::new();
    for (name, rtype, records) in zone.record_sets() {
        if !matches!(
            rtype,
            RecordType::A | RecordType::AAAA | RecordType::TXT | RecordType::SRV
        ) {
            continue;
        }
        if is_nameserver_name(name) {
            continue;
        }
        let values = records.iter().filter_map(|r| value_of(&r.data)).collect();
        let ttl = records.first().map_or(0, |r| i64::from(r.ttl));
        out.push(RecordSet::new(
            &name.to_ascii(),
            &rtype.to_string(),
            ttl,
            values,
        ));
    }
    out.sort();
    out
}

/// `ns<id>.<domain>`: names of our own nameservers, which Route53 replaces.
fn is_nameserver_name(name: &hickory_proto::rr::Name) -> bool {
    let Some(first) = name.iter().next() else {
        return false;
    };
    first.len() > 2
        && first[..2].eq_ignore_ascii_case(b"ns")
        && first[2..].iter().all(u8::is_ascii_digit)
}

/// Route53's text form of one record's data.
fn value_of(data: &RData) -> Option<String> {
    Some(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::SRV(s) => format!(
            "{} {} {} {}",
            s.priority,
            s.weight,
            s.port,
            normalize(&s.target.to_ascii())
        ),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| quote(&String::from_utf8_lossy(s)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => return None,
    })
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn unquote(s: &str) -> String {
    s.trim()
        .trim_start_matches('"')
        .trim_end_matches('"')
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
}

/// Reads an ownership record: its owner and the (name, type) keys it lists.
fn read_owner(set: &RecordSet) -> Option<(String, BTreeSet<(String, String)>)> {
    let mut owner = None;
    let mut owned = BTreeSet::new();
    for v in &set.values {
        let v = unquote(v);
        if let Some(rest) = v.strip_prefix(HERITAGE) {
            owner = rest.strip_prefix(",concoord/owner=").map(|o| o.to_string());
        } else if let Some(rest) = v.strip_prefix("owns ")
            && let Some((rtype, name)) = rest.split_once(' ')
        {
            owned.insert((normalize(name), rtype.to_string()));
        }
    }
    owner.map(|o| (o, owned))
}

fn owner_set(domain: &str, owner: &str, owned: &BTreeSet<(String, String)>, ttl: i64) -> RecordSet {
    let mut values = vec![quote(&format!("{HERITAGE},concoord/owner={owner}"))];
    values.extend(owned.iter().map(|(n, t)| quote(&format!("owns {t} {n}"))));
    RecordSet::new(&owner_record_name(domain), "TXT", ttl, values)
}

/// The changes that turn `actual` (the hosted zone's record sets) into `wanted`, touching
/// only what `owner` owns. Sorted: deletions last, ownership record with them.
pub fn plan(
    domain: &str,
    owner: &str,
    wanted: &[RecordSet],
    actual: &[RecordSet],
) -> Result<Plan, PlanError> {
    let actual: BTreeMap<(String, String), &RecordSet> =
        actual.iter().map(|s| (s.key(), s)).collect();
    let owner_key = (owner_record_name(domain), "TXT".to_string());
    let previous = actual.get(&owner_key).copied();
    let mut owned = match previous.map(read_owner) {
        Some(Some((other, _))) if other != owner => {
            return Err(PlanError::OwnedByOther {
                name: owner_key.0,
                other,
                ours: owner.to_string(),
            });
        }
        Some(Some((_, owned))) => owned,
        _ => BTreeSet::new(),
    };
    let mut out = Plan::default();
    let wanted_keys: BTreeSet<(String, String)> = wanted.iter().map(RecordSet::key).collect();
    for want in wanted {
        let key = want.key();
        match actual.get(&key) {
            None => {
                out.changes.push(Change {
                    action: Action::Create,
                    set: want.clone(),
                });
                owned.insert(key);
            }
            Some(have) if *have == want => {}
            Some(_) if owned.contains(&key) => out.changes.push(Change {
                action: Action::Upsert,
                set: want.clone(),
            }),
            Some(_) => out.conflicts.push(key),
        }
    }
    let gone: Vec<(String, String)> = owned
        .iter()
        .filter(|k| !wanted_keys.contains(*k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(have) = actual.get(&key) {
            out.changes.push(Change {
                action: Action::Delete,
                set: (*have).clone(),
            });
        }
        owned.remove(&key);
    }
    // Records that vanished behind our back are no longer ours.
    owned.retain(|k| actual.contains_key(k) || wanted_keys.contains(k));
    let ttl = wanted.first().map_or(300, |s| s.ttl);
    let record = owner_set(domain, owner, &owned, ttl);
    match previous {
        _ if owned.is_empty() => {
            if let Some(prev) = previous {
                out.changes.push(Change {
                    action: Action::Delete,
                    set: prev.clone(),
                });
            }
        }
        Some(prev) if *prev == record => {}
        Some(_) => out.changes.push(Change {
            action: Action::Upsert,
            set: record,
        }),
        None => out.changes.push(Change {
            action: Action::Create,
            set: record,
        }),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, rtype: &str, values: &[&str]) -> RecordSet {
        RecordSet::new(
            name,
            rtype,
            5,
            values.iter().map(|v| v.to_string()).collect(),
        )
    }

    fn actions(p: &Plan) -> Vec<(Action, String, String)> {
        p.changes
            .iter()
            .map(|c| (c.action, c.set.name.clone(), c.set.rtype.clone()))
            .collect()
    }

    const D: &str = "example.com";

    #[test]
    fn first_sync_creates_everything_and_the_ownership_record() {
        let want = [
            set("example.com", "A", &["10.0.0.1"]),
            set("r1.example.com.", "A", &["10.0.0.1"]),
        ];
        let p = plan(D, "me", &want, &[]).unwrap();
        assert_eq!(
            actions(&p),
            [
                (Action::Create, "example.com.".into(), "A".into()),
                (Action::Create, "r1.example.com.".into(), "A".into()),
                (
                    Action::Create,
                    "_concoord-owner.example.com.".into(),
                    "TXT".into()
                ),
            ]
        );
        let owner = &p.changes[2].set;
        assert!(
            owner
                .values
                .contains(&"\"owns A r1.example.com.\"".to_string())
        );
        // Applying it gives a plan with nothing to do.
        let actual: Vec<RecordSet> = p.changes.iter().map(|c| c.set.clone()).collect();
        assert_eq!(plan(D, "me", &want, &actual).unwrap(), Plan::default());
    }

    #[test]
    fn only_owned_records_are_changed_or_deleted() {
        let first = [
            set("example.com", "A", &["10.0.0.1"]),
            set("r1.example.com", "A", &["10.0.0.1"]),
        ];
        let mut actual: Vec<RecordSet> = plan(D, "me", &first, &[])
            .unwrap()
            .changes
            .into_iter()
            .map(|c| c.set)
            .collect();
        actual.push(set("www.example.com", "A", &["192.0.2.1"]));
        actual.push(set("r2.example.com", "A", &["192.0.2.2"]));
        actual.push(set("example.com", "NS", &["ns-1.awsdns.com."]));
        // r1 leaves, r2 arrives (but someone else holds it), the apex changes.
        let want = [
            set("example.com", "A", &["10.0.0.2"]),
            set("r2.example.com", "A", &["10.0.0.2"]),
        ];
        let p = plan(D, "me", &want, &actual).unwrap();
        assert_eq!(
            p.conflicts,
            [("r2.example.com.".to_string(), "A".to_string())]
        );
        assert_eq!(
            actions(&p),
            [
                (Action::Upsert, "example.com.".into(), "A".into()),
                (Action::Delete, "r1.example.com.".into(), "A".into()),
                (
                    Action::Upsert,
                    "_concoord-owner.example.com.".into(),
                    "TXT".into()
                ),
            ]
        );
        // The delete carries the values Route53 has (it must match exactly).
        assert_eq!(p.changes[1].set.values, ["10.0.0.1"]);
        // Nothing wanted any more: our records and the ownership record go.
        let p = plan(D, "me", &[], &actual).unwrap();
        assert_eq!(
            p.changes
                .iter()
                .filter(|c| c.action == Action::Delete)
                .count(),
            3
        );
        // Another owner's zone is refused whole.
        assert!(matches!(
            plan(D, "you", &want, &actual),
            Err(PlanError::OwnedByOther { .. })
        ));
    }

    #[test]
    fn names_are_compared_the_way_route53_writes_them() {
        assert_eq!(normalize("Example.COM"), "example.com.");
        assert_eq!(normalize("\\052.example.com."), "*.example.com.");
        assert_eq!(
            owner_record_name("example.com."),
            "_concoord-owner.example.com."
        );
    }
}
