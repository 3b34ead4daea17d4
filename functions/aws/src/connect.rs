//! Connects the ports to the resources `bootstrap` created, for every AWS-backed host
//! (`flowgate serve --backend aws` and the Lambda functions).

use std::sync::Arc;

use flowgate_core::ports::{Queue, Store};

use crate::{AwsConfig, DynamoStore, SqsQueue, sdk_config};

/// Why the backend could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The environment is incomplete or malformed.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A queue does not exist (or cannot be reached).
    #[error("queue {name} not found ({reason}); run `flowgate aws bootstrap` first")]
    Queue {
        /// The queue name.
        name: String,
        /// The SDK's error chain.
        reason: String,
    },
}

/// The store and the queue, with the configuration they came from.
pub struct Connected {
    /// The DynamoDB store.
    pub store: Arc<dyn Store>,
    /// The SQS queue.
    pub queue: Arc<dyn Queue>,
    /// Where they are.
    pub config: AwsConfig,
}

/// Reads [`AwsConfig::from_env`] and looks up the queue URLs once, at start.
pub async fn connect() -> Result<Connected, ConnectError> {
    let config = AwsConfig::from_env()?;
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut urls = Vec::new();
    for name in [&config.queue, &config.dlq] {
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| ConnectError::Queue {
                name: name.clone(),
                reason: flowgate_core::error::error_chain(&e),
            })?
            .queue_url
            .unwrap_or_default();
        urls.push(url);
    }
    let dlq_url = urls.pop().unwrap_or_default();
    let queue_url = urls.pop().unwrap_or_default();
    Ok(Connected {
        store: Arc::new(DynamoStore::new(
            dynamo,
            &config.table,
            config.retention_days,
        )),
        queue: Arc::new(SqsQueue::new(sqs, queue_url, dlq_url)),
        config,
    })
}
