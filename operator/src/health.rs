//! `concoord-operator check-health --url URL`: the image has no shell or curl, so the helm
//! test hook and probes call the binary itself.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url}: not a valid http:// URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: answered {status}")]
    Unhealthy { url: String, status: u16 },
    #[error("{url}: no answer within {secs}s")]
    Timeout { url: String, secs: u64 },
}

/// Ok when `url` answers 2xx within `limit`.
pub async fn check_health(url: &str, limit: Duration) -> Result<(), HealthError> {
    let uri: hyper::Uri =
        url.parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HealthError::BadUrl {
                url: url.into(),
                reason: e.to_string(),
            })?;
    if uri.scheme_str() != Some("http") {
        return Err(HealthError::BadUrl {
            url: url.into(),
            reason: "only http:// is supported".into(),
        });
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let answer = tokio::time::timeout(limit, client.get(uri))
        .await
        .map_err(|_| HealthError::Timeout {
            url: url.into(),
            secs: limit.as_secs(),
        })?
        .map_err(|e| HealthError::Unreachable {
            url: url.into(),
            reason: e.to_string(),
        })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(HealthError::Unhealthy {
            url: url.into(),
            status: status.as_u16(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, router};
    use std::sync::Arc;

    #[tokio::test]
    async fn endpoints_answer_and_check_health_reads_them() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconciled(Duration::from_millis(30), true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(metrics.clone())).into_future());
        let limit = Duration::from_secs(5);
        check_health(&format!("http://{addr}/healthz"), limit)
            .await
            .unwrap();
        let err = check_health(&format!("http://{addr}/readyz"), limit)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HealthError::Unhealthy { status: 503, .. }),
            "{err}"
        );
        metrics.set_ready(true);
        check_health(&format!("http://{addr}/readyz"), limit)
            .await
            .unwrap();
        check_health(&format!("http://{addr}/metrics"), limit)
            .await
            .unwrap();
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("concoord_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            check_health(&format!("http://{addr}/nope"), limit)
                .await
                .is_err()
        );
        assert!(matches!(
            check_health("https://x/healthz", limit).await,
            Err(HealthError::BadUrl { .. })
        ));
        server.abort();
        // Nobody listens any more.
        let _ = server.await;
        assert!(
            check_health(&format!("http://{addr}/healthz"), limit)
                .await
                .is_err()
        );
    }
}
