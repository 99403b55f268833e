//! Talking to a cluster's replicas through the concoord client library, behind a trait so
//! reconcile tests can supply the membership they need.

use async_trait::async_trait;
use concoord::client::{
    Client, ClientError, ClientOptions, Credentials, TypeSummary, add_member_over,
    fetch_status_with, remove_member_over,
};
use concoord::net::wire::StatusReport;
use std::sync::Arc;
use std::time::Duration;

/// How long one status request may take; a slow replica counts as unhealthy.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a membership change may take (an election or hand-over included).
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

#[async_trait]
pub trait Replicas: Send + Sync {
    /// The same replicas reached with a cluster's credentials (its CA, the operator's
    /// token).
    fn with_credentials(self: Arc<Self>, creds: Credentials) -> Arc<dyn Replicas>;
    /// One replica's own report.
    async fn status(&self, addr: &str) -> Result<StatusReport, ClientError>;
    /// Adds `member` ("host:port") to the view through any of `seeds`; returns the new view number.
    async fn add_member(&self, seeds: &[String], member: &str) -> Result<u64, ClientError>;
    /// Removes `member` (address or id) from the view; returns the new view number.
    async fn remove_member(&self, seeds: &[String], member: &str) -> Result<u64, ClientError>;
    /// Creates an object unless one of that name exists.
    async fn ensure_object(
        &self,
        seeds: &[String],
        name: &str,
        type_name: &str,
        args: &[serde_json::Value],
    ) -> Result<(), ClientError>;
    /// The user types the group runs: (`module.Class`, sha256) each.
    async fn list_types(&self, seeds: &[String]) -> Result<Vec<TypeSummary>, ClientError>;
    /// Defines (replacing) a user type from Python source; an empty `class` means the
    /// source's only class. Returns the type's name and sha256 as the group holds it.
    async fn define_type(
        &self,
        seeds: &[String],
        module: &str,
        class: &str,
        source: &str,
    ) -> Result<(String, String), ClientError>;
}

/// The real replicas, over the network, with the credentials of one cluster (none until
/// `with_credentials`).
#[derive(Default)]
pub struct NetworkReplicas {
    creds: Credentials,
}

impl NetworkReplicas {
    /// Runs `work` in a session of its own, which is closed however `work` ends (so no
    /// session is left to expire on the replicas).
    async fn in_session<T>(
        &self,
        seeds: &[String],
        work: impl AsyncFnOnce(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let options = ClientOptions {
            tls: self.creds.tls.clone(),
            token: self.creds.token.clone(),
            ..ClientOptions::default()
        };
        let client = Client::connect(&seeds.join(", "), options).await?;
        let result = work(&client).await;
        let _ = client.close().await;
        result
    }
}

#[async_trait]
impl Replicas for NetworkReplicas {
    fn with_credentials(self: Arc<Self>, creds: Credentials) -> Arc<dyn Replicas> {
        Arc::new(NetworkReplicas { creds })
    }

    async fn status(&self, addr: &str) -> Result<StatusReport, ClientError> {
        fetch_status_with(addr, STATUS_TIMEOUT, self.creds.clone()).await
    }

    async fn add_member(&self, seeds: &[String], member: &str) -> Result<u64, ClientError> {
        Ok(add_member_over(
            &seeds.join(", "),
            member,
            CHANGE_TIMEOUT,
            self.creds.clone(),
        )
        .await?
        .number)
    }

    async fn remove_member(&self, seeds: &[String], member: &str) -> Result<u64, ClientError> {
        Ok(remove_member_over(
            &seeds.join(", "),
            member,
            CHANGE_TIMEOUT,
            self.creds.clone(),
        )
        .await?
        .number)
    }

    async fn ensure_object(
        &self,
        seeds: &[String],
        name: &str,
        type_name: &str,
        args: &[serde_json::Value],
    ) -> Result<(), ClientError> {
        let args = args
            .iter()
            .map(concoord::json::from_json)
            .collect::<Vec<_>>();
        self.in_session(seeds, async |client| {
            if client.list().await?.contains_key(name) {
                Ok(())
            } else {
                client.create(name, type_name, args).await
            }
        })
        .await
    }

    async fn list_types(&self, seeds: &[String]) -> Result<Vec<TypeSummary>, ClientError> {
        self.in_session(seeds, async |client| client.list_types().await)
            .await
    }

    async fn define_type(
        &self,
        seeds: &[String],
        module: &str,
        class: &str,
        source: &str,
    ) -> Result<(String, String), ClientError> {
        self.in_session(seeds, async |client| {
            let t = client.define_type(module, class, source, true).await?;
            Ok((t.name, t.sha256))
        })
        .await
    }
}
