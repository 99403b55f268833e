//! The few Route53 calls the sync needs, over aws-sdk-route53, with errors sorted into
//! "wait and retry" (throttling, unreachable) and "will not work as asked".
//!
//! Credentials, region, endpoint override, retries and timeouts: see [`crate::aws`].

use super::credentials::Stored;
use super::plan::{Action, Change, RecordSet};
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

/// Error codes Route53 uses when it wants us to slow down.
const THROTTLING: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Route53 throttled the request ({0})")]
    Throttled(String),
    #[error("Route53 is unreachable: {0}")]
    Unreachable(String),
    #[error("Route53 refused: {0}")]
    Rejected(String),
    #[error("no Route53 hosted zone is named {0}")]
    NoZone(String),
}

impl ApiError {
    /// Worth retrying after a short wait.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Throttled(_) | ApiError::Unreachable(_))
    }
}

fn classify<E>(e: SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = aws_sdk_route53::error::DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status().as_u16();
            if THROTTLING.contains(&code) || status == 429 {
                ApiError::Throttled(if code.is_empty() {
                    status.to_string()
                } else {
                    code.to_string()
                })
            } else if status >= 500 {
                ApiError::Unreachable(text)
            } else {
                ApiError::Rejected(text)
            }
        }
        SdkError::ConstructionFailure(_) => ApiError::Rejected(text),
        _ => ApiError::Unreachable(text),
    }
}

/// A Route53 client whose retries are ours (so backoff and jitter are visible and tested).
pub struct Route53 {
    client: aws_sdk_route53::Client,
}

impl Route53 {
    /// A client with the credential chain above; `endpoint` overrides where requests go
    /// (tests; otherwise `AWS_ENDPOINT_URL` or AWS itself).
    pub async fn connect(stored: Stored, endpoint: Option<&str>) -> Route53 {
        // Route53 is global; its API lives in us-east-1 unless the partition says otherwise.
        let shared = crate::aws::shared_config(stored, crate::aws::region_from_env()).await;
        let mut config = aws_sdk_route53::config::Builder::from(&shared);
        if let Some(url) = endpoint {
            config = config.endpoint_url(url);
        }
        Route53 {
            client: aws_sdk_route53::Client::from_conf(config.build()),
        }
    }

    /// The id of the public hosted zone named `domain`.
    pub async fn find_zone(&self, domain: &str) -> Result<String, ApiError> {
        let want = super::plan::normalize(domain);
        let out = self
            .client
            .list_hosted_zones_by_name()
            .dns_name(want.clone())
            .send()
            .await
            .map_err(classify)?;
        let mut zones: Vec<_> = out
            .hosted_zones()
            .iter()
            .filter(|z| super::plan::normalize(z.name()) == want)
            .collect();
        // A public zone before a private one of the same name.
        zones.sort_by_key(|z| z.config().is_some_and(|c| c.private_zone()));
        zones
            .first()
            .map(|z| bare_id(z.id()))
            .ok_or(ApiError::NoZone(want))
    }

    /// Every plain record set of the zone (alias and routing-policy sets are never ours and
    /// are left out).
    pub async fn list(&self, zone: &str) -> Result<Vec<RecordSet>, ApiError> {
        let mut out = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut req = self.client.list_resource_record_sets().hosted_zone_id(zone);
            if let Some((name, rtype, ident)) = next.take() {
                req = req
                    .start_record_name(name)
                    .start_record_type(rtype)
                    .set_start_record_identifier(ident);
            }
            let page = req.send().await.map_err(classify)?;
            for set in page.resource_record_sets() {
                if set.alias_target().is_some() || set.set_identifier().is_some() {
                    continue;
                }
                let values = set
                    .resource_records()
                    .iter()
                    .map(|r| r.value().to_string())
                    .collect();
                out.push(RecordSet::new(
                    set.name(),
                    set.r#type().as_str(),
                    set.ttl().unwrap_or_default(),
                    values,
                ));
            }
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(rtype)) => {
                    next = Some((
                        name.to_string(),
                        rtype.clone(),
                        page.next_record_identifier().map(str::to_string),
                    ));
                }
                _ => return Ok(out),
            }
        }
    }

    /// Sends `changes` as one atomic change batch.
    pub async fn apply(
        &self,
        zone: &str,
        changes: &[Change],
        comment: &str,
    ) -> Result<(), ApiError> {
        let rejected = |e: aws_sdk_route53::error::BuildError| ApiError::Rejected(e.to_string());
        let mut batch = Vec::with_capacity(changes.len());
        for c in changes {
            let records = c
                .set
                .values
                .iter()
                .map(|v| ResourceRecord::builder().value(v).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(rejected)?;
            let set = ResourceRecordSet::builder()
                .name(&c.set.name)
                .r#type(RrType::from(c.set.rtype.as_str()))
                .ttl(c.set.ttl)
                .set_resource_records(Some(records))
                .build()
                .map_err(rejected)?;
            let action = match c.action {
                Action::Create => ChangeAction::Create,
                Action::Upsert => ChangeAction::Upsert,
                Action::Delete => ChangeAction::Delete,
            };
            batch.push(
                aws_sdk_route53::types::Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(rejected)?,
            );
        }
        let batch = ChangeBatch::builder()
            .comment(comment)
            .set_changes(Some(batch))
            .build()
            .map_err(rejected)?;
        self.client
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// `/hostedzone/Z123` -> `Z123`.
pub fn bare_id(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}
