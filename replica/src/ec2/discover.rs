//! `concoord replica --discover ec2:cluster=NAME`: from inside an instance, find the
//! cluster's other replicas by tag and decide whether to found the group or join it.
//!
//! The rule: list the cluster's pending and running instances (DescribeInstances by the
//! `concoord:cluster` tag) and ask each one's replica for its status. If any answers as a
//! member, join through those that did. If none answers, the instance first in founding
//! order (oldest launch time, then instance id; see [`super::cluster`]) founds the group,
//! and every other instance waits and asks again until someone answers.
//!
//! The race: DescribeInstances is eventually consistent, so just after a launch an
//! instance may not yet see an older sibling and wrongly believe it comes first. Two
//! groups would then be founded. The founder therefore founds only after it has seen
//! itself first in answers at least [`Pacing::settle`] apart with still nobody answering;
//! a sibling that was invisible for longer than that can still split the cluster. Once a
//! group runs, a replica started later always finds a member and joins, and a replica with
//! a data directory (`-w`) recovers its own membership and ignores the decision.

use super::Ec2Error;
use super::api::{Ec2, LIVE_STATES};
use super::cluster::Instance;
use super::metadata;
use std::time::{Duration, Instant};

/// `ec2:cluster=NAME`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoverSpec {
    pub cluster: String,
}

impl std::str::FromStr for DiscoverSpec {
    type Err = Ec2Error;

    fn from_str(s: &str) -> Result<DiscoverSpec, Ec2Error> {
        let usage = || Ec2Error::Usage(format!("--discover {s:?}: expected ec2:cluster=NAME"));
        let rest = s.strip_prefix("ec2:").ok_or_else(usage)?;
        let cluster = rest.strip_prefix("cluster=").ok_or_else(usage)?;
        super::userdata::check_cluster(cluster)?;
        Ok(DiscoverSpec {
            cluster: cluster.to_string(),
        })
    }
}

/// How often to ask again, and how long the founder must keep seeing itself first.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    pub poll: Duration,
    pub settle: Duration,
    /// Give up when no member answers and this instance is not the founder for this long.
    pub limit: Duration,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            poll: Duration::from_secs(2),
            settle: Duration::from_secs(6),
            // Instances boot and install Docker at their own pace.
            limit: Duration::from_secs(15 * 60),
        }
    }
}

/// What discovery decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub instance_id: String,
    /// This replica's address: `-a` when given, else the instance's private IP.
    pub addr: String,
    /// Members to join through, or none to found the group.
    pub bootstrap: Option<Vec<String>>,
}

/// Runs the rule above for the replica that will listen on `addr` (or the private IP) and
/// `port`.
pub async fn discover(
    spec: &DiscoverSpec,
    imds_endpoint: Option<&str>,
    addr: Option<&str>,
    port: u16,
    pacing: Pacing,
) -> Result<Discovered, Ec2Error> {
    let me = metadata::identity(imds_endpoint).await?;
    let addr = addr.map_or_else(|| me.private_ip.clone(), str::to_string);
    let my_addr = format!("{addr}:{port}");
    let ec2 = Ec2::connect().await?;
    let started = Instant::now();
    let mut first_since: Option<Instant> = None;
    loop {
        let instances = match ec2.instances(&spec.cluster, &LIVE_STATES).await {
            Ok(list) => list,
            Err(Ec2Error::Unreachable(e)) if started.elapsed() < pacing.limit => {
                tracing::warn!("discovery: {e}; asking again");
                tokio::time::sleep(pacing.poll).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !instances.iter().any(|i| i.id == me.instance_id) {
            return Err(Ec2Error::Failed(format!(
                "this instance ({}) is not a running instance tagged {}={}",
                me.instance_id,
                super::CLUSTER_TAG,
                spec.cluster
            )));
        }
        let answering = answering_members(&instances, &me.instance_id, &my_addr).await;
        if !answering.is_empty() {
            tracing::info!(
                "discovery: joining cluster {} through {}",
                spec.cluster,
                answering.join(", ")
            );
            return Ok(Discovered {
                instance_id: me.instance_id,
                addr,
                bootstrap: Some(answering),
            });
        }
        let founder = &instances[0];
        if founder.id == me.instance_id {
            let since = *first_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= pacing.settle {
                tracing::info!(
                    "discovery: no member of cluster {} answers and {} comes first: founding",
                    spec.cluster,
                    me.instance_id
                );
                return Ok(Discovered {
                    instance_id: me.instance_id,
                    addr,
                    bootstrap: None,
                });
            }
        } else {
            first_since = None;
            tracing::info!(
                "discovery: waiting for {} (first in founding order) or another member",
                founder.id
            );
        }
        if started.elapsed() >= pacing.limit {
            return Err(Ec2Error::Failed(format!(
                "no member of cluster {} answered within {}s; {} should found it",
                spec.cluster,
                pacing.limit.as_secs(),
                founder.id
            )));
        }
        tokio::time::sleep(pacing.poll).await;
    }
}

/// The addresses of the other instances whose replicas answer as members.
async fn answering_members(instances: &[Instance], me: &str, my_addr: &str) -> Vec<String> {
    let others: Vec<String> = instances
        .iter()
        .filter(|i| i.id != me)
        .filter_map(Instance::replica_addr)
        .filter(|a| a != my_addr)
        .collect();
    let probes = futures::future::join_all(
        others
            .iter()
            .map(|a| crate::client::fetch_status(a, Duration::from_secs(1))),
    )
    .await;
    others
        .into_iter()
        .zip(probes)
        .filter(|(_, p)| {
            p.as_ref()
                .is_ok_and(|r| matches!(r.state.as_str(), "" | "member" | "learner"))
        })
        .map(|(a, _)| a)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_forms() {
        let s: DiscoverSpec = "ec2:cluster=prod-1".parse().unwrap();
        assert_eq!(s.cluster, "prod-1");
        assert!("ec2:prod".parse::<DiscoverSpec>().is_err());
        assert!("dns:cluster=x".parse::<DiscoverSpec>().is_err());
        assert!("ec2:cluster=".parse::<DiscoverSpec>().is_err());
        assert!("ec2:cluster=a b".parse::<DiscoverSpec>().is_err());
    }
}
