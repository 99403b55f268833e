//! `concoord ec2 list --cluster NAME`: the cluster's instances, their addresses, and how
//! each one's replica answers.

use super::Ec2Error;
use super::api::{Ec2, PRESENT_STATES};
use super::cluster::Instance;
use crate::client::Credentials;
use std::time::Duration;

/// How long to wait for each replica's status.
const STATUS_WAIT: Duration = Duration::from_secs(2);

pub async fn list(cluster: &str, creds: &Credentials) -> Result<(), Ec2Error> {
    super::userdata::check_cluster(cluster)?;
    let ec2 = Ec2::connect().await?;
    let instances = ec2.instances(cluster, &PRESENT_STATES).await?;
    if instances.is_empty() {
        println!("cluster {cluster} has no instances");
        return Ok(());
    }
    let statuses =
        futures::future::join_all(instances.iter().map(|i| replica_status(i, creds))).await;
    print!("{}", render(&instances, &statuses));
    Ok(())
}

/// "member 2, leader" / "learner 4" / "unreachable: why" / "-" (no address yet).
async fn replica_status(i: &Instance, creds: &Credentials) -> String {
    let Some(addr) = i.replica_addr() else {
        return "-".into();
    };
    if i.state != "running" {
        return "-".into();
    }
    match crate::client::fetch_status_with(&addr, STATUS_WAIT, creds.clone()).await {
        Ok(r) => {
            let state = if r.state.is_empty() {
                "member"
            } else {
                &r.state
            };
            let leader = if r.is_leader { ", leader" } else { "" };
            format!("{state} {} (view {}){leader}", r.replica, r.view.number)
        }
        Err(e) => format!("unreachable: {e}"),
    }
}

pub fn render(instances: &[Instance], statuses: &[String]) -> String {
    let mut rows = vec![
        [
            "INSTANCE",
            "STATE",
            "TYPE",
            "PRIVATE IP",
            "PUBLIC IP",
            "REPLICA",
            "STATUS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, status) in instances.iter().zip(statuses) {
        rows.push(vec![
            i.id.clone(),
            i.state.clone(),
            i.instance_type.clone(),
            i.private_ip.clone().unwrap_or_else(|| "-".into()),
            i.public_ip.clone().unwrap_or_else(|| "-".into()),
            i.replica_addr().unwrap_or_else(|| "-".into()),
            status.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
