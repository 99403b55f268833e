//! `concoord ec2 terminate --cluster NAME`: terminate every instance of the cluster, after
//! the user typed the cluster name on the terminal, or with `--yes`. Without a terminal
//! and without `--yes` it refuses, so a script never destroys a cluster by accident.

use super::Ec2Error;
use super::api::{Ec2, PRESENT_STATES};
use std::io::{BufRead, IsTerminal, Write};

pub async fn terminate(cluster: &str, yes: bool) -> Result<(), Ec2Error> {
    super::userdata::check_cluster(cluster)?;
    if !yes && !std::io::stdin().is_terminal() {
        return Err(Ec2Error::Usage(format!(
            "refusing to terminate cluster {cluster}: no terminal to confirm on; pass --yes"
        )));
    }
    let ec2 = Ec2::connect().await?;
    let instances = ec2.instances(cluster, &PRESENT_STATES).await?;
    if instances.is_empty() {
        println!("cluster {cluster} has no instances");
        return Ok(());
    }
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    if !yes && !confirm(cluster, &ids)? {
        return Err(Ec2Error::Usage(
            "not confirmed; nothing was terminated".into(),
        ));
    }
    ec2.terminate(&ids).await?;
    println!(
        "terminating {} instance(s) of cluster {cluster}: {}",
        ids.len(),
        ids.join(", ")
    );
    Ok(())
}

/// Asks on the terminal; true when the user typed the cluster name.
fn confirm(cluster: &str, ids: &[String]) -> Result<bool, Ec2Error> {
    let io = |e: std::io::Error| Ec2Error::Failed(format!("reading the confirmation: {e}"));
    let mut err = std::io::stderr();
    write!(
        err,
        "Terminate {} instance(s) of cluster {cluster} ({})? Their replicas and data are lost.\n\
         Type the cluster name to confirm: ",
        ids.len(),
        ids.join(", ")
    )
    .and_then(|_| err.flush())
    .map_err(io)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(io)?;
    Ok(line.trim() == cluster)
}
