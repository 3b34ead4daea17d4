//! The AWS backend's configuration, read once from the environment.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;

/// Where the backend's resources are. `AWS_ENDPOINT_URL` (for moto or LocalStack),
/// `AWS_REGION` and credentials are read by the SDK itself.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// DynamoDB table (`FLOWGATE_TABLE`, default `flowgate`).
    pub table: String,
    /// Main queue name (`FLOWGATE_QUEUE`, default `flowgate-requests`).
    pub queue: String,
    /// Dead-letter queue name (`FLOWGATE_DLQ`, default `flowgate-requests-dlq`).
    pub dlq: String,
    /// Days a finished request is kept before its TTL expires it (`FLOWGATE_RETENTION_DAYS`,
    /// default 7).
    pub retention_days: u32,
}

/// A missing or malformed variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    var: &'static str,
    reason: String,
}

fn var(name: &'static str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl AwsConfig {
    /// Reads the configuration, failing once, naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let retention = var("FLOWGATE_RETENTION_DAYS", "7");
        let retention_days = retention.parse().map_err(|_| ConfigError {
            var: "FLOWGATE_RETENTION_DAYS",
            reason: format!("{retention:?} is not a whole number of days"),
        })?;
        Ok(Self {
            table: var("FLOWGATE_TABLE", "flowgate"),
            queue: var("FLOWGATE_QUEUE", "flowgate-requests"),
            dlq: var("FLOWGATE_DLQ", "flowgate-requests-dlq"),
            retention_days,
        })
    }
}

/// The SDK configuration with explicit retries (standard mode, 3 attempts) and timeouts, over
/// an HTTPS client on rustls with ring.
pub async fn sdk_config() -> SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(25))
                .build(),
        )
        .load()
        .await
}
