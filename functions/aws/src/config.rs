//! The SDK configuration every AWS-backed host shares. Where the resources are comes from
//! the settings (`flowgate_settings`); `AWS_ENDPOINT_URL` (for moto), `AWS_REGION` and the
//! credentials are read by the SDK itself.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;

/// SQS's longest visibility timeout, in seconds.
pub const SQS_MAX_VISIBILITY_SECS: u64 = flowgate_settings::specs::MAX_VISIBILITY.as_secs();

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
