//! `concoord ec2 launch`: start a new cluster's instances in one RunInstances call (EC2
//! starts all of them or none), then check they exist. When something fails after the
//! call, the message names the instances that exist and how to remove them.

use super::api::{Ec2, LIVE_STATES, PRESENT_STATES, RunSpec};
use super::cli::ReplicaFlags;
use super::userdata::ReplicaLaunch;
use super::{AUTH_TAG, CLUSTER_TAG, DOMAIN_TAG, Ec2Error, IMAGE_TAG, PORT_TAG, TLS_TAG, ZONE_TAG};
use std::time::{Duration, Instant};

/// How long launched instances may take to show up as pending or running.
const SHOW_UP: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct LaunchOptions {
    pub replica: ReplicaFlags,
    pub count: u16,
    pub instance_type: String,
    pub ami: Option<String>,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
}

/// The tags every instance of the cluster carries; `ec2 scale` launches more of the same
/// from them.
pub fn tags(launch: &ReplicaLaunch) -> Vec<(String, String)> {
    let mut tags = vec![
        (CLUSTER_TAG.to_string(), launch.cluster.clone()),
        ("Name".to_string(), format!("concoord-{}", launch.cluster)),
        (IMAGE_TAG.to_string(), launch.image.clone()),
        (PORT_TAG.to_string(), launch.port.to_string()),
    ];
    if let Some(d) = &launch.domain {
        tags.push((DOMAIN_TAG.to_string(), d.clone()));
    }
    if let Some(z) = &launch.route53_zone_id {
        tags.push((ZONE_TAG.to_string(), z.clone()));
    }
    // Whether the replicas serve TLS and check identities: the name clients check, and
    // "on"; the certificates and the auth file themselves are only in the user data.
    if let Some(tls) = &launch.tls {
        tags.push((TLS_TAG.to_string(), tls.server_name.clone()));
    }
    if launch.auth.is_some() {
        tags.push((AUTH_TAG.to_string(), "on".to_string()));
    }
    tags
}

/// What `--dry-run` prints: the request and the user data, nothing sent.
pub fn dry_run(opts: &LaunchOptions) -> Result<String, Ec2Error> {
    let launch = opts.replica.launch(crate::aws::region_from_env())?;
    let script = launch.script()?;
    let mut out = format!(
        "would launch {} x {} from {} in {}\n",
        opts.count,
        opts.instance_type,
        opts.ami
            .as_deref()
            .unwrap_or("the newest Amazon Linux 2023 AMI"),
        launch.region
    );
    for (k, v) in tags(&launch) {
        out.push_str(&format!("tag {k}={v}\n"));
    }
    out.push_str("user data:\n");
    out.push_str(&script);
    Ok(out)
}

/// Launches the cluster; the new instance ids.
pub async fn launch(opts: &LaunchOptions) -> Result<Vec<String>, Ec2Error> {
    let ec2 = Ec2::connect().await?;
    let launch = opts.replica.launch(ec2.region().to_string())?;
    let script = launch.script()?;
    let existing = ec2.instances(&launch.cluster, &PRESENT_STATES).await?;
    if !existing.is_empty() {
        let ids: Vec<&str> = existing.iter().map(|i| i.id.as_str()).collect();
        return Err(Ec2Error::Usage(format!(
            "cluster {} already has {} instance(s) ({}); use `concoord ec2 scale` to change its size",
            launch.cluster,
            ids.len(),
            ids.join(", ")
        )));
    }
    let ami = match &opts.ami {
        Some(ami) => {
            ec2.check_image(ami).await?;
            ami.clone()
        }
        None => ec2.default_ami().await?,
    };
    let spec = RunSpec {
        ami,
        instance_type: opts.instance_type.clone(),
        subnet: opts.subnet.clone(),
        security_groups: opts.security_groups.clone(),
        key_name: opts.key_name.clone(),
        user_data: script,
        tags: tags(&launch),
    };
    let ids = start(&ec2, &spec, opts.count, &launch.cluster).await?;
    println!(
        "launched {} instance(s) of cluster {}: {}",
        ids.len(),
        launch.cluster,
        ids.join(", ")
    );
    println!(
        "the replicas start once Docker is installed; watch them with `concoord ec2 list --cluster {}`",
        launch.cluster
    );
    Ok(ids)
}

/// Runs `count` instances of `spec` and waits until EC2 lists them as pending or running.
/// Any failure after RunInstances names what exists.
pub async fn start(
    ec2: &Ec2,
    spec: &RunSpec,
    count: u16,
    cluster: &str,
) -> Result<Vec<String>, Ec2Error> {
    let ids = match ec2.run(spec, count).await {
        Ok(ids) => ids,
        Err(Ec2Error::Unreachable(e)) => {
            // The request may or may not have arrived.
            return Err(Ec2Error::Failed(format!(
                "EC2 is unreachable: {e}; instances may have started: check with `concoord ec2 list --cluster {cluster}`"
            )));
        }
        Err(e) => return Err(e),
    };
    let left_behind = |ids: &[String], why: String| {
        Ec2Error::Failed(format!(
            "{why}; these instances exist: {}; remove them with `concoord ec2 terminate --cluster {cluster} --yes` \
             (or `aws ec2 terminate-instances --instance-ids {}`)",
            ids.join(", "),
            ids.join(" ")
        ))
    };
    if ids.len() != usize::from(count) {
        return Err(left_behind(
            &ids,
            format!("EC2 started {} of {count} instances", ids.len()),
        ));
    }
    let deadline = Instant::now() + SHOW_UP;
    loop {
        let seen = match ec2
            .instances(
                cluster,
                &["pending", "running", "shutting-down", "terminated"],
            )
            .await
        {
            Ok(seen) => seen,
            Err(e) => {
                return Err(left_behind(
                    &ids,
                    format!("checking the new instances: {e}"),
                ));
            }
        };
        let failed: Vec<String> = seen
            .iter()
            .filter(|i| ids.contains(&i.id) && !LIVE_STATES.contains(&i.state.as_str()))
            .map(|i| format!("{} is {}", i.id, i.state))
            .collect();
        if !failed.is_empty() {
            return Err(left_behind(&ids, failed.join(", ")));
        }
        if ids.iter().all(|id| seen.iter().any(|i| &i.id == id)) {
            return Ok(ids);
        }
        if Instant::now() >= deadline {
            return Err(left_behind(
                &ids,
                format!(
                    "not all new instances were listed within {}s",
                    SHOW_UP.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
