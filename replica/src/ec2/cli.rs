//! `concoord ec2 launch|user-data|list|scale|terminate`: clap definitions and dispatch.

use super::launch::LaunchOptions;
use super::userdata::ReplicaLaunch;
use crate::cli::{CliError, parse_duration};
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct Ec2Args {
    #[command(subcommand)]
    pub action: Ec2Action,
}

#[derive(Subcommand, Debug)]
pub enum Ec2Action {
    /// Start N instances that run the replica image and find each other by tag.
    Launch(LaunchArgs),
    /// Print the user data script `launch` gives each instance.
    UserData(ReplicaFlags),
    /// Show the cluster's instances, their addresses and how their replicas answer.
    List(ClusterArg),
    /// Grow or shrink the cluster one replica at a time, membership first.
    Scale(ScaleArgs),
    /// Terminate every instance of the cluster (asks first unless --yes).
    Terminate(TerminateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ClusterArg {
    /// Cluster name (instances are tagged concoord:cluster=NAME)
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
}

/// What the replica on each instance runs with.
#[derive(Args, Debug, Clone)]
pub struct ReplicaFlags {
    /// Cluster name (instances are tagged concoord:cluster=NAME)
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// Replica image to run [default: concoord/replica:<this version>]
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Port the replicas listen on
    #[arg(long, default_value_t = super::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Serve DNS for this domain from the replicas (-n)
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Keep this Route53 hosted zone in step with the view (-r)
    #[arg(long = "route53-zone-id", value_name = "ID", requires = "domain")]
    pub route53_zone_id: Option<String>,
}

impl ReplicaFlags {
    pub fn launch(&self, region: String) -> ReplicaLaunch {
        ReplicaLaunch {
            cluster: self.cluster.clone(),
            image: self.image.clone().unwrap_or_else(super::default_image),
            port: self.port,
            region,
            domain: self.domain.clone(),
            route53_zone_id: self.route53_zone_id.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub replica: ReplicaFlags,
    /// Number of instances (an odd number tolerates the most failures per instance)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=99))]
    pub count: u16,
    /// EC2 instance type
    #[arg(long = "instance-type", default_value = "t3.small")]
    pub instance_type: String,
    /// AMI [default: the newest Amazon Linux 2023 x86_64]
    #[arg(long, value_name = "AMI")]
    pub ami: Option<String>,
    /// Subnet to launch into [default: the default VPC's]
    #[arg(long, value_name = "SUBNET")]
    pub subnet: Option<String>,
    /// Security group id (repeat for more); it must let the replicas reach each other
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_group: Vec<String>,
    /// EC2 key pair for SSH access
    #[arg(long = "key-name", value_name = "KEY")]
    pub key_name: Option<String>,
    /// Print what would be launched, and the user data, without launching
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// The number of instances wanted
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=99))]
    pub count: u16,
    /// How long each step (a removal, or a launch until it has joined) may take
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub step_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct TerminateArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(args: Ec2Args) -> Result<(), CliError> {
    match args.action {
        Ec2Action::Launch(a) => {
            let opts = LaunchOptions {
                replica: a.replica,
                count: a.count,
                instance_type: a.instance_type,
                ami: a.ami,
                subnet: a.subnet,
                security_groups: a.security_group,
                key_name: a.key_name,
            };
            if a.dry_run {
                print!("{}", super::launch::dry_run(&opts)?);
                Ok(())
            } else {
                super::launch::launch(&opts).await?;
                Ok(())
            }
        }
        Ec2Action::UserData(flags) => {
            print!("{}", flags.launch(crate::aws::region_from_env()).script()?);
            Ok(())
        }
        Ec2Action::List(c) => Ok(super::list::list(&c.cluster).await?),
        Ec2Action::Scale(a) => {
            Ok(super::scale::scale(&a.cluster.cluster, a.count, a.step_timeout).await?)
        }
        Ec2Action::Terminate(a) => {
            Ok(super::terminate::terminate(&a.cluster.cluster, a.yes).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn launch_flags() {
        let cli = Cli::try_parse_from([
            "concoord",
            "ec2",
            "launch",
            "--cluster",
            "c1",
            "--count",
            "3",
            "--security-group",
            "sg-1",
            "--security-group",
            "sg-2",
            "--domain",
            "example.com",
            "--route53-zone-id",
            "Z1",
        ])
        .unwrap();
        let Command::Ec2(args) = cli.command else {
            panic!("not ec2")
        };
        let super::Ec2Action::Launch(l) = args.action else {
            panic!("not launch")
        };
        assert_eq!(l.count, 3);
        assert_eq!(l.security_group, ["sg-1", "sg-2"]);
        assert_eq!(l.instance_type, "t3.small");
        assert_eq!(l.replica.port, 14000);
        assert!(
            Cli::try_parse_from([
                "concoord",
                "ec2",
                "launch",
                "--cluster",
                "c",
                "--count",
                "0"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "concoord",
                "ec2",
                "user-data",
                "--cluster",
                "c",
                "--route53-zone-id",
                "Z"
            ])
            .is_err(),
            "a zone needs a domain"
        );
    }
}
