//! This instance's id and private address, from the instance metadata service (IMDSv2,
//! through aws-config's client). The endpoint is the SDK's default (or
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`) unless `--imds-endpoint` / `CONCOORD_IMDS_ENDPOINT`
//! names another, as tests do.

use super::Ec2Error;
use std::time::Duration;

/// What a replica needs to know about the instance it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    pub private_ip: String,
}

/// Asks the metadata service at `endpoint` (or the default one).
pub async fn identity(endpoint: Option<&str>) -> Result<Identity, Ec2Error> {
    let mut builder = aws_config::imds::Client::builder()
        .max_attempts(3)
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(2));
    if let Some(url) = endpoint {
        builder = builder
            .endpoint(url)
            .map_err(|e| Ec2Error::Metadata(format!("endpoint {url:?}: {e}")))?;
    }
    let client = builder.build();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .await
                .map(|v| v.as_ref().trim().to_string())
                .map_err(|e| {
                    Ec2Error::Metadata(format!(
                        "{path}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(&e)
                    ))
                })
        }
    };
    let instance_id = get("/latest/meta-data/instance-id").await?;
    let private_ip = get("/latest/meta-data/local-ipv4").await?;
    if instance_id.is_empty() || private_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Ec2Error::Metadata(format!(
            "unexpected answer: instance id {instance_id:?}, local-ipv4 {private_ip:?}"
        )));
    }
    Ok(Identity {
        instance_id,
        private_ip,
    })
}
