//! The EC2 calls the launch path needs, over aws-sdk-ec2, with each failure sorted into the
//! one line a user needs (no credentials, unknown AMI, quota, not authorized).

use super::Ec2Error;
use super::cluster::Instance;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};
use base64::Engine;

/// Error codes that mean an account limit, not a mistake in the request.
const QUOTA: [&str; 4] = [
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "InsufficientInstanceCapacity",
];
/// Error codes that mean the credentials may not do this.
const UNAUTHORIZED: [&str; 5] = [
    "UnauthorizedOperation",
    "AuthFailure",
    "OptInRequired",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// States of an instance that still exists (or will).
pub const LIVE_STATES: [&str; 2] = ["pending", "running"];
/// States of an instance that is not gone yet.
pub const PRESENT_STATES: [&str; 5] =
    ["pending", "running", "stopping", "stopped", "shutting-down"];

fn classify<E>(operation: &str, e: SdkError<E, HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default().to_string();
            let message = service.err().message().unwrap_or("no message").to_string();
            if QUOTA.contains(&code.as_str()) {
                Ec2Error::Quota { code, message }
            } else if UNAUTHORIZED.contains(&code.as_str()) {
                Ec2Error::Unauthorized { code, message }
            } else if code.starts_with("InvalidAMIID") {
                Ec2Error::UnknownAmi(message)
            } else if service.raw().status().as_u16() >= 500 {
                Ec2Error::Unreachable(format!("{operation}: {code}: {message}"))
            } else {
                Ec2Error::Rejected {
                    operation: operation.to_string(),
                    message: format!("{code}: {message}"),
                }
            }
        }
        SdkError::ConstructionFailure(_) => Ec2Error::Rejected {
            operation: operation.to_string(),
            message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
        },
        _ => Ec2Error::Unreachable(format!(
            "{operation}: {}",
            aws_sdk_ec2::error::DisplayErrorContext(&e)
        )),
    }
}

/// What one RunInstances call asks for.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub ami: String,
    pub instance_type: String,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub user_data: String,
    pub tags: Vec<(String, String)>,
}

pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    region: String,
}

impl Ec2 {
    /// A client with the shared credential chain ([`crate::aws`]); fails with one line when
    /// there are no credentials, before anything is sent.
    pub async fn connect() -> Result<Ec2, Ec2Error> {
        let region = crate::aws::region_from_env();
        let shared =
            crate::aws::shared_config(crate::aws::stored_credentials(), region.clone()).await;
        crate::aws::check_credentials(&shared)
            .await
            .map_err(Ec2Error::NoCredentials)?;
        Ok(Ec2 {
            client: aws_sdk_ec2::Client::new(&shared),
            region,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The cluster's instances in any of `states`, oldest first (see [`super::cluster`]).
    pub async fn instances(
        &self,
        cluster: &str,
        states: &[&str],
    ) -> Result<Vec<Instance>, Ec2Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{}", super::CLUSTER_TAG))
                        .values(cluster)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
                        .build(),
                )
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeInstances", e))?;
            for reservation in page.reservations() {
                out.extend(reservation.instances().iter().map(Instance::from_sdk));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        super::cluster::sort_founding_order(&mut out);
        Ok(out)
    }

    /// Fails with [`Ec2Error::UnknownAmi`] unless `ami` exists and is visible to us.
    pub async fn check_image(&self, ami: &str) -> Result<(), Ec2Error> {
        let out = self
            .client
            .describe_images()
            .image_ids(ami)
            .send()
            .await
            .map_err(|e| match classify("DescribeImages", e) {
                Ec2Error::UnknownAmi(_) => Ec2Error::UnknownAmi(ami.to_string()),
                Ec2Error::Rejected { message, .. } if message.contains("InvalidAMIID") => {
                    Ec2Error::UnknownAmi(ami.to_string())
                }
                other => other,
            })?;
        if out.images().iter().any(|i| i.image_id() == Some(ami)) {
            Ok(())
        } else {
            Err(Ec2Error::UnknownAmi(ami.to_string()))
        }
    }

    /// The newest Amazon Linux 2023 x86_64 image Amazon publishes in this region.
    pub async fn default_ami(&self) -> Result<String, Ec2Error> {
        let out = self
            .client
            .describe_images()
            .owners("amazon")
            .filters(
                Filter::builder()
                    .name("name")
                    .values("al2023-ami-2023.*-x86_64")
                    .build(),
            )
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        out.images()
            .iter()
            .filter_map(|i| Some((i.creation_date()?, i.image_id()?)))
            .max()
            .map(|(_, id)| id.to_string())
            .ok_or(Ec2Error::NoDefaultAmi)
    }

    /// Starts exactly `count` instances (EC2 starts all or none); their ids.
    pub async fn run(&self, spec: &RunSpec, count: u16) -> Result<Vec<String>, Ec2Error> {
        let tags: Vec<Tag> = spec
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let out = self
            .client
            .run_instances()
            .image_id(&spec.ami)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(i32::from(count))
            .max_count(i32::from(count))
            .set_subnet_id(spec.subnet.clone())
            .set_security_group_ids(
                (!spec.security_groups.is_empty()).then(|| spec.security_groups.clone()),
            )
            .set_key_name(spec.key_name.clone())
            .user_data(base64::engine::general_purpose::STANDARD.encode(&spec.user_data))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("RunInstances", e))?;
        Ok(out
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }

    /// Asks EC2 to terminate `ids`.
    pub async fn terminate(&self, ids: &[String]) -> Result<(), Ec2Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| classify("TerminateInstances", e))?;
        Ok(())
    }
}
