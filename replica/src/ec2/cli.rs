//! `concoord ec2 launch|user-data|list|scale|terminate`: clap definitions and dispatch.

use super::Ec2Error;
use super::launch::LaunchOptions;
use super::userdata::{LaunchTls, ReplicaLaunch};
use crate::cli::{CliError, parse_duration};
use crate::client::Credentials;
use crate::net::secure::ClientTls;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
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
    List(ListArgs),
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
    #[command(flatten)]
    pub security: SecurityFlags,
}

impl ReplicaFlags {
    /// What each instance is told; with `--pki`, a fresh replica certificate for the cluster.
    pub fn launch(&self, region: String) -> Result<ReplicaLaunch, Ec2Error> {
        Ok(ReplicaLaunch {
            cluster: self.cluster.clone(),
            image: self.image.clone().unwrap_or_else(super::default_image),
            port: self.port,
            region,
            domain: self.domain.clone(),
            route53_zone_id: self.route53_zone_id.clone(),
            tls: self.security.tls(&self.cluster, self.domain.as_deref())?,
            auth: self.security.auth()?,
        })
    }
}

/// TLS and authentication for the cluster's replicas.
#[derive(Args, Debug, Clone, Default)]
pub struct SecurityFlags {
    /// A CA made by `concoord certs init DIR`: the replicas serve TLS with a certificate it
    /// signs for <cluster>.concoord (clients: --ca DIR/ca.crt --tls-server-name
    /// <cluster>.concoord). The certificate, its key and the CA travel in the user data,
    /// never in tags
    #[arg(long, value_name = "DIR")]
    pub pki: Option<PathBuf>,
    /// The replicas' auth file (`concoord replica --auth-file`), sent in the user data
    #[arg(long = "auth-file", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
}

impl SecurityFlags {
    pub fn tls(&self, cluster: &str, domain: Option<&str>) -> Result<Option<LaunchTls>, Ec2Error> {
        super::userdata::check_cluster(cluster)?;
        self.pki
            .as_deref()
            .map(|dir| LaunchTls::issue(dir, cluster, domain))
            .transpose()
    }

    /// The auth file's text, checked as a replica would check it, with its tokens replaced
    /// by their digests (user data can be read back: it must hold no token).
    pub fn auth(&self) -> Result<Option<String>, Ec2Error> {
        let Some(path) = &self.auth_file else {
            return Ok(None);
        };
        if self.pki.is_none() {
            return Err(Ec2Error::Usage(
                "--auth-file needs --pki: without TLS the tokens would cross the network in clear, and the replicas could not link to each other (they prove themselves with their certificates)".into(),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Ec2Error::Usage(format!("--auth-file {}: {e}", path.display())))?;
        crate::auth::hash_tokens(&text)
            .map(Some)
            .map_err(|(line, reason)| {
                Ec2Error::Usage(format!("--auth-file {}:{line}: {reason}", path.display()))
            })
    }
}

/// How this command reaches the cluster's replicas: over TLS with the CA of `pki` and the
/// cluster's certificate name, showing `token`.
pub fn credentials(
    cluster: &str,
    pki: Option<&Path>,
    token: Option<String>,
) -> Result<Credentials, Ec2Error> {
    let tls = match pki {
        None => None,
        Some(dir) => Some(
            ClientTls::load(&dir.join("ca.crt"), None, None)
                .map_err(|e| Ec2Error::Usage(format!("--pki: {e}")))?
                .with_server_name(Some(super::userdata::server_name(cluster))),
        ),
    };
    Ok(Credentials {
        tls,
        token: crate::auth::Token::from_arg(token.as_deref()),
    })
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// The cluster's CA directory, for replicas launched with --pki
    #[arg(long, value_name = "DIR")]
    pub pki: Option<PathBuf>,
    /// A token for replicas with an auth file
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONCOORD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
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
    /// For a cluster launched with them: its CA (new instances get a certificate from it)
    /// and its auth file
    #[command(flatten)]
    pub security: SecurityFlags,
    /// An admin token, for replicas with an auth file (membership changes)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONCOORD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
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
            print!("{}", flags.launch(crate::aws::region_from_env())?.script()?);
            Ok(())
        }
        Ec2Action::List(a) => {
            let creds = credentials(&a.cluster.cluster, a.pki.as_deref(), a.token)?;
            Ok(super::list::list(&a.cluster.cluster, &creds).await?)
        }
        Ec2Action::Scale(a) => {
            let cluster = &a.cluster.cluster;
            let creds = credentials(cluster, a.security.pki.as_deref(), a.token.clone())?;
            Ok(super::scale::scale(cluster, a.count, a.step_timeout, &a.security, &creds).await?)
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
