//! The AWS SDK configuration Route53 (`-r`) and EC2 (`concoord ec2`) share: one credential
//! chain, one region rule, our own retries and timeouts.
//!
//! Credentials: the environment first, then the file `concoord route53id/route53key` wrote,
//! then the rest of the standard chain (profile, web identity for Kubernetes service
//! accounts, container and instance roles). `AWS_ENDPOINT_URL` (or the per-service
//! `AWS_ENDPOINT_URL_ROUTE_53`, `AWS_ENDPOINT_URL_EC2`) points a client elsewhere, e.g. at a
//! local emulator.

use crate::dns::route53::credentials::{self, Stored};
use aws_config::BehaviorVersion;
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::ProvideCredentials;
use std::time::Duration;

/// The region used when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` names one. Fixed here,
/// so no instance-metadata lookup happens for the region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The region from the environment, else [`DEFAULT_REGION`].
pub fn region_from_env() -> String {
    std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

/// The credentials `concoord route53id/route53key` stored, or none (with a warning) when
/// the file cannot be read.
pub fn stored_credentials() -> Stored {
    match credentials::path().and_then(|p| credentials::load(&p)) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!("stored AWS credentials not read ({e}); using the AWS chain");
            Stored::default()
        }
    }
}

/// The shared SDK configuration for `region` with the credential chain above. Retries are
/// off (callers retry visibly where it is safe); attempts time out.
pub async fn shared_config(stored: Stored, region: String) -> aws_config::SdkConfig {
    let mut chain = CredentialsProviderChain::first_try(
        "Environment",
        EnvironmentVariableCredentialsProvider::new(),
    );
    if let (Some(id), Some(secret)) = (stored.key_id, stored.secret) {
        chain = chain.or_else(
            "ConcoordConfig",
            aws_sdk_ec2::config::Credentials::new(id, secret, None, None, "concoord"),
        );
    }
    let chain = chain.or_default_provider().await;
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(chain)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(15))
                .build(),
        )
        .load()
        .await
}

/// Whether the configuration finds credentials; the reason when it does not, so a command
/// can say so in one line before it sends anything.
pub async fn check_credentials(config: &aws_config::SdkConfig) -> Result<(), String> {
    let Some(provider) = config.credentials_provider() else {
        return Err("no credentials provider is configured".into());
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| {
            let text = aws_sdk_ec2::error::DisplayErrorContext(&e).to_string();
            // The usual case says the same thing three times over; say it once.
            if text.contains("no providers in chain provided credentials") {
                "no provider in the chain had any".to_string()
            } else {
                text
            }
        })
}
