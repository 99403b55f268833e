//! `concoord ec2 scale --cluster NAME --count M`: change the cluster's size one replica at a
//! time, membership first.
//!
//! Down: the newest instance goes first (the oldest founded the group). Its replica is
//! removed from the view through the client library (a leader hands over first), and only
//! once the view no longer holds it is its instance terminated; the group never counts on a
//! replica that is gone. Up: one instance is launched with the settings the cluster's tags
//! and oldest instance record; the next is launched only after the previous one's replica
//! has joined the view as a voting member.
//!
//! Both directions need the replicas' addresses reachable from where this runs (inside
//! the VPC, or through the `concoord:addr` tag); when no replica answers, nothing is
//! launched or terminated.

use super::api::{Ec2, LIVE_STATES, PRESENT_STATES, RunSpec};
use super::cli::SecurityFlags;
use super::cluster::Instance;
use super::userdata::ReplicaLaunch;
use super::{AUTH_TAG, DOMAIN_TAG, Ec2Error, IMAGE_TAG, TLS_TAG, ZONE_TAG};
use crate::client::Credentials;
use crate::command::View;
use std::time::{Duration, Instant};

/// How often to look again while waiting for a new replica.
const POLL: Duration = Duration::from_millis(500);

pub async fn scale(
    cluster: &str,
    count: u16,
    step_timeout: Duration,
    security: &SecurityFlags,
    creds: &Credentials,
) -> Result<(), Ec2Error> {
    super::userdata::check_cluster(cluster)?;
    let ec2 = Ec2::connect().await?;
    let live = ec2.instances(cluster, &LIVE_STATES).await?;
    if live.is_empty() {
        return Err(Ec2Error::Usage(format!(
            "cluster {cluster} has no running instances; start it with `concoord ec2 launch`"
        )));
    }
    let want = usize::from(count);
    if want == live.len() {
        println!("cluster {cluster} already has {want} instance(s)");
        return Ok(());
    }
    if want < live.len() {
        shrink(&ec2, cluster, live, want, step_timeout, creds).await
    } else {
        grow(&ec2, cluster, live, want, step_timeout, security, creds).await
    }
}

/// The addresses of `instances`' replicas.
fn addrs(instances: &[Instance]) -> Vec<String> {
    instances
        .iter()
        .filter_map(Instance::replica_addr)
        .collect()
}

/// The newest view any of `addrs` reports.
async fn current_view(addrs: &[String], creds: &Credentials) -> Option<View> {
    let reports = futures::future::join_all(
        addrs
            .iter()
            .map(|a| crate::client::fetch_status_with(a, Duration::from_secs(2), creds.clone())),
    )
    .await;
    reports
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| r.view)
        .max_by_key(|v| v.number)
}

fn describe(view: &View) -> String {
    let members: Vec<String> = view
        .members
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect();
    format!("view {}: {}", view.number, members.join(", "))
}

async fn shrink(
    ec2: &Ec2,
    cluster: &str,
    mut live: Vec<Instance>,
    want: usize,
    step_timeout: Duration,
    creds: &Credentials,
) -> Result<(), Ec2Error> {
    while live.len() > want {
        let Some(victim) = live.pop() else { break };
        let others = addrs(&live);
        let remaining = |live: &[Instance]| {
            live.iter()
                .map(|i| i.id.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let addr = victim.replica_addr();
        let Some(view) = current_view(&others, creds).await else {
            return Err(Ec2Error::Failed(format!(
                "no replica of cluster {cluster} answers (asked {}); the view must change before an \
                 instance goes, so nothing was terminated: run this where the replicas are reachable",
                others.join(", ")
            )));
        };
        let in_view = addr
            .as_ref()
            .is_some_and(|addr| view.everyone().any(|(_, a)| a == addr));
        match addr {
            Some(addr) if in_view => {
                println!("removing {} ({addr}) from the view", victim.id);
                let view = crate::client::remove_member_over(
                    &others.join(", "),
                    &addr,
                    step_timeout,
                    creds.clone(),
                )
                .await
                    .map_err(|e| {
                        Ec2Error::Failed(format!(
                            "removing {} ({addr}) from the view failed: {e}; nothing was terminated for it \
                             (instances still running: {}, {})",
                            victim.id,
                            remaining(&live),
                            victim.id
                        ))
                    })?;
                println!("removed {} ({addr}); {}", victim.id, describe(&view));
            }
            Some(addr) => println!(
                "{} ({addr}) is not in the view; terminating it directly",
                victim.id
            ),
            None => println!("{} has no address yet; terminating it directly", victim.id),
        }
        ec2.terminate(std::slice::from_ref(&victim.id))
            .await
            .map_err(|e| {
                Ec2Error::Failed(format!(
                    "{} left the view but terminating it failed: {e}; terminate it with \
                     `aws ec2 terminate-instances --instance-ids {}`",
                    victim.id, victim.id
                ))
            })?;
        println!("terminated {}", victim.id);
    }
    println!("cluster {cluster} has {want} instance(s)");
    Ok(())
}

/// The request that launches one more instance like the cluster's oldest.
fn template(
    ec2: &Ec2,
    cluster: &str,
    oldest: &Instance,
    security: &SecurityFlags,
) -> Result<RunSpec, Ec2Error> {
    // The certificates and the auth file are not in the tags: the caller brings them again.
    if oldest.tag(TLS_TAG).is_some() && security.pki.is_none() {
        return Err(Ec2Error::Usage(format!(
            "cluster {cluster} serves TLS: give --pki DIR (its CA) so the new instance gets a certificate"
        )));
    }
    if oldest.tag(AUTH_TAG).is_some() && security.auth_file.is_none() {
        return Err(Ec2Error::Usage(format!(
            "cluster {cluster} checks identities: give --auth-file FILE (the replicas' auth file)"
        )));
    }
    let launch = ReplicaLaunch {
        cluster: cluster.to_string(),
        image: oldest
            .tag(IMAGE_TAG)
            .map_or_else(super::default_image, str::to_string),
        port: oldest.port(),
        region: ec2.region().to_string(),
        domain: oldest.tag(DOMAIN_TAG).map(str::to_string),
        route53_zone_id: oldest.tag(ZONE_TAG).map(str::to_string),
        tls: security.tls(cluster, oldest.tag(DOMAIN_TAG))?,
        auth: security.auth()?,
    };
    Ok(RunSpec {
        ami: oldest.image_id.clone(),
        instance_type: oldest.instance_type.clone(),
        subnet: oldest.subnet.clone(),
        security_groups: oldest.security_groups.clone(),
        key_name: oldest.key_name.clone(),
        user_data: launch.script()?,
        tags: super::launch::tags(&launch),
    })
}

async fn grow(
    ec2: &Ec2,
    cluster: &str,
    live: Vec<Instance>,
    want: usize,
    step_timeout: Duration,
    security: &SecurityFlags,
    creds: &Credentials,
) -> Result<(), Ec2Error> {
    let spec = template(ec2, cluster, &live[0], security)?;
    let mut members = addrs(&live);
    if current_view(&members, creds).await.is_none() {
        return Err(Ec2Error::Failed(format!(
            "no replica of cluster {cluster} answers (asked {}); nothing was launched: run this \
             where the replicas are reachable",
            members.join(", ")
        )));
    }
    let mut have = live.len();
    while have < want {
        let ids = super::launch::start(ec2, &spec, 1, cluster).await?;
        let id = ids.join(", ");
        println!("launched {id}; waiting for its replica to join the view");
        let addr = wait_joined(ec2, cluster, &id, &members, step_timeout, creds)
            .await
            .map_err(|why| {
                Ec2Error::Failed(format!(
                    "{why}; {id} is still running: look at it with `concoord ec2 list --cluster {cluster}`, \
                     or remove it with `concoord ec2 scale --cluster {cluster} --count {have}`"
                ))
            })?;
        members.push(addr);
        have += 1;
    }
    println!("cluster {cluster} has {want} instance(s)");
    Ok(())
}

/// Waits until instance `id`'s replica is a voting member of the view; its address.
async fn wait_joined(
    ec2: &Ec2,
    cluster: &str,
    id: &str,
    members: &[String],
    limit: Duration,
    creds: &Credentials,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no address yet");
    while Instant::now() < deadline {
        match ec2.instances(cluster, &PRESENT_STATES).await {
            Ok(list) => match list.iter().find(|i| i.id == id) {
                Some(i) if !super::api::LIVE_STATES.contains(&i.state.as_str()) => {
                    return Err(format!("{id} is {}", i.state));
                }
                Some(i) => {
                    if let Some(addr) = i.replica_addr() {
                        // The members say whether it joined; the newcomer is not asked.
                        match current_view(members, creds).await {
                            Some(view) if view.members.values().any(|a| *a == addr) => {
                                println!("{id} ({addr}) joined; {}", describe(&view));
                                return Ok(addr);
                            }
                            Some(view) => {
                                last = format!("{addr} is not a member of view {}", view.number)
                            }
                            None => last = "no member answers".into(),
                        }
                    }
                }
                None => last = format!("{id} is not listed"),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!(
        "{id} did not join within {}s ({last})",
        limit.as_secs()
    ))
}
