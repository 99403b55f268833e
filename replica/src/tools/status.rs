//! `concoord status ADDRS [--json]`: asks every given replica, and every member the replies
//! name, for its status, and shows them side by side.

use crate::cli::{CliError, StatusArgs};
use crate::client::{ClientError, Credentials, Seeds, fetch_status_with};
use crate::net::wire::StatusReport;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Stops a reply that names absurdly many members from making us crawl forever.
const MAX_REPLICAS: usize = 256;

/// One replica's answer, or why it gave none.
#[derive(Debug)]
pub struct Probe {
    pub addr: String,
    pub result: Result<StatusReport, ClientError>,
}

pub async fn run(a: &StatusArgs) -> Result<(), CliError> {
    let named = Seeds::parse(&a.addrs)?.resolve_named().await?;
    let creds = a.creds.load()?;
    let published: HashMap<String, String> = named
        .iter()
        .filter_map(|(addr, name)| Some((addr.clone(), name.clone()?)))
        .collect();
    let seeds = named.into_iter().map(|(addr, _)| addr).collect();
    let probes = survey_published(seeds, a.timeout, &creds, &published).await;
    if a.json {
        println!("{}", render_json(&probes));
    } else {
        print!("{}", render_table(&probes));
    }
    if probes.iter().all(|p| p.result.is_err()) {
        return Err(CliError::Failed("no replica answered".into()));
    }
    Ok(())
}

/// Asks the seeds, then the members they report that were not asked yet, until none is new.
pub async fn survey(seeds: Vec<String>, limit: Duration, creds: &Credentials) -> Vec<Probe> {
    survey_published(seeds, limit, creds, &HashMap::new()).await
}

/// [`survey`], checking TLS certificates of the addresses SRV discovery found for the
/// names they were published under.
async fn survey_published(
    seeds: Vec<String>,
    limit: Duration,
    creds: &Credentials,
    published: &HashMap<String, String>,
) -> Vec<Probe> {
    let creds_for = |addr: &str| {
        let mut c = creds.clone();
        if let Some(name) = published.get(addr) {
            c.tls = c.tls.map(|tls| tls.or_server_name(name));
        }
        c
    };
    let mut seen: BTreeSet<String> = seeds.iter().cloned().collect();
    let mut frontier = seeds;
    let mut probes = Vec::new();
    while !frontier.is_empty() {
        let answers = futures::future::join_all(
            frontier
                .iter()
                .map(|addr| fetch_status_with(addr, limit, creds_for(addr))),
        )
        .await;
        let mut next = Vec::new();
        for (addr, result) in frontier.into_iter().zip(answers) {
            if let Ok(report) = &result {
                for (_, member) in report.view.everyone() {
                    if seen.len() < MAX_REPLICAS && seen.insert(member.to_string()) {
                        next.push(member.to_string());
                    }
                }
            }
            probes.push(Probe { addr, result });
        }
        frontier = next;
    }
    // Reachable replicas by id first, then the others by address.
    probes.sort_by_key(|p| match &p.result {
        Ok(r) => (0, r.replica, p.addr.clone()),
        Err(_) => (1, 0, p.addr.clone()),
    });
    probes
}

pub fn render_table(probes: &[Probe]) -> String {
    let header = [
        "ID", "ADDRESS", "LEADER", "VIEW", "BALLOT", "DECIDED", "EXECUTED", "STATE",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for p in probes {
        rows.push(match &p.result {
            Ok(r) => vec![
                r.replica.to_string(),
                p.addr.clone(),
                if r.is_leader { "*" } else { "" }.to_string(),
                r.view.number.to_string(),
                format!("{}.{}", r.ballot.0, r.ballot.1),
                r.decided_upto.to_string(),
                r.executed_upto.to_string(),
                // Older replicas do not report a state; "ok" is what they meant.
                match r.state.as_str() {
                    "" | "member" => "ok".to_string(),
                    other => other.to_string(),
                },
            ],
            Err(e) => {
                let mut row = vec!["-".to_string(), p.addr.clone(), String::new()];
                row.extend(std::iter::repeat_n("-".to_string(), 4));
                row.push(match e {
                    ClientError::NoReplica { last_error, .. } => {
                        format!("unreachable: {last_error}")
                    }
                    other => format!("error: {other}"),
                });
                row
            }
        });
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn render_json(probes: &[Probe]) -> String {
    let items: Vec<serde_json::Value> = probes
        .iter()
        .map(|p| match &p.result {
            Ok(r) => json!({
                "addr": p.addr,
                "reachable": true,
                "replica": r.replica,
                "is_leader": r.is_leader,
                "leader": r.leader,
                "view": r.view.number,
                "members": r.view.members,
                "learners": r.view.learners,
                "ballot": [r.ballot.0, r.ballot.1],
                "decided_upto": r.decided_upto,
                "executed_upto": r.executed_upto,
                "sessions": r.sessions,
                "objects": r.objects,
                "state": r.state,
            }),
            Err(e) => json!({
                "addr": p.addr,
                "reachable": false,
                "error": e.to_string(),
            }),
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::fake::{FakeReplica, report};
    use crate::net::wire::{ClientFrame, ReplicaFrame};

    /// A fake that answers one status query with a report naming `members`.
    async fn answer_once(fake: &mut FakeReplica, id: u64, members: Vec<String>) {
        let mut conn = fake.accept().await;
        assert!(matches!(conn.frame().await, Some(ClientFrame::Status)));
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        conn.send(ReplicaFrame::Status(report(id, &members)));
        // Keep the connection until the client has read the reply and hung up.
        let _ = conn.frame().await;
    }

    #[tokio::test]
    async fn surveys_the_members_it_learns() {
        let mut a = FakeReplica::start().await;
        let mut b = FakeReplica::start().await;
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = gone.local_addr().unwrap().to_string();
        drop(gone);
        let members = vec![a.addr.clone(), b.addr.clone(), dead.clone()];
        let seeds = vec![a.addr.clone()];
        let ask = tokio::spawn(async move {
            survey(seeds, Duration::from_secs(2), &Credentials::default()).await
        });
        answer_once(&mut a, 1, members.clone()).await;
        answer_once(&mut b, 2, members.clone()).await;
        let probes = ask.await.unwrap();
        let addrs: Vec<&str> = probes.iter().map(|p| p.addr.as_str()).collect();
        assert_eq!(addrs, [a.addr.as_str(), b.addr.as_str(), dead.as_str()]);
        assert!(probes[2].result.is_err());

        let table = render_table(&probes);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains(" * ") && lines[1].contains("3.1") && lines[1].ends_with("ok"));
        assert!(lines[3].contains("unreachable"), "{table}");

        let parsed: serde_json::Value = serde_json::from_str(&render_json(&probes)).unwrap();
        assert_eq!(parsed[0]["is_leader"], true);
        assert_eq!(parsed[1]["replica"], 2);
        assert_eq!(parsed[2]["reachable"], false);
    }
}
