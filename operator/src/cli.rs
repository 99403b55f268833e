//! The `concoord-operator` command line: `crd`, `run` and `check-health`.

use crate::health::{HealthError, check_health};
use crate::run::{RunError, RunOptions};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;

#[derive(Parser, Debug)]
#[command(
    name = "concoord-operator",
    version,
    about = "Kubernetes operator for ConCoord clusters (ConCoordCluster, concoord.io/v1alpha1)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the ConCoordCluster CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller.
    Run(RunArgs),
    /// Exit 0 when URL answers with a 2xx status (for probes and `helm test`).
    CheckHealth {
        #[arg(long, value_name = "URL")]
        url: String,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz endpoints
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Run the controller only while holding a coordination.k8s.io Lease
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the Lease
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Watch only this namespace [default: all namespaces]
    #[arg(long)]
    pub namespace: Option<String>,
    /// Replica image repository for every cluster whose spec.image is the default
    /// "concoord/replica", whether that was left out or written explicitly (the two cannot
    /// be told apart once the API server applied the default); other images are kept
    #[arg(long, value_name = "IMAGE")]
    pub replica_image: Option<String>,
    /// Route53 API endpoint for deleting a cluster's records [default: AWS]
    #[arg(long, value_name = "URL")]
    pub route53_endpoint: Option<String>,
    /// DNS domain of the Kubernetes cluster (the kubelet's clusterDomain); member addresses
    /// are POD.NAME-peers.NAMESPACE.svc.DOMAIN
    #[arg(
        long,
        env = "CONCOORD_CLUSTER_DOMAIN",
        default_value = crate::names::DEFAULT_CLUSTER_DOMAIN,
        value_name = "DOMAIN"
    )]
    pub cluster_domain: String,
    /// Debug logging
    #[arg(short = 'd', long)]
    pub debug: bool,
}

/// Why the command failed; `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Health(#[from] HealthError),
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::generate::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => {
            crate::run::init_logging(args.debug);
            crate::run::run(RunOptions {
                metrics_addr: args.metrics_addr,
                leader_elect: args.leader_elect,
                lease_namespace: args.leader_election_namespace,
                namespace: args.namespace,
                replica_image: args.replica_image,
                route53_endpoint: args.route53_endpoint,
                cluster_domain: args.cluster_domain,
            })
            .await?;
            Ok(())
        }
        Command::CheckHealth { url, timeout_secs } => {
            check_health(&url, std::time::Duration::from_secs(timeout_secs)).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("concoord-operator").chain(args.iter().copied()))
    }

    #[test]
    fn run_flags_as_agreed() {
        let Command::Run(r) = parse(&[
            "run",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--leader-elect",
            "--leader-election-namespace",
            "ops",
            "--namespace",
            "apps",
            "--replica-image",
            "concoord/replica",
            "--cluster-domain",
            "corp.example",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(r.metrics_addr, "127.0.0.1:9090".parse().unwrap());
        assert!(r.leader_elect);
        assert_eq!(r.leader_election_namespace, "ops");
        assert_eq!(r.namespace.as_deref(), Some("apps"));
        assert_eq!(r.cluster_domain, "corp.example");
        let Command::Run(r) = parse(&["run"]).unwrap().command else {
            panic!()
        };
        assert_eq!(r.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert!(!r.leader_elect && r.namespace.is_none());
        // The default, unless CONCOORD_CLUSTER_DOMAIN is set in the test's environment.
        if std::env::var_os("CONCOORD_CLUSTER_DOMAIN").is_none() {
            assert_eq!(r.cluster_domain, "cluster.local");
        }
        assert!(parse(&["check-health"]).is_err());
        assert!(matches!(
            parse(&["check-health", "--url", "http://x/healthz"])
                .unwrap()
                .command,
            Command::CheckHealth { .. }
        ));
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
