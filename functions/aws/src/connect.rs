//! Connects the ports to the resources the settings name, for every AWS-backed host
//! (`flowgate serve --backend aws`, `flowgate dlq --backend aws` and the Lambda functions).

use std::sync::Arc;

use flowgate_core::ports::{Queue, Store};
use flowgate_settings::Settings;

use crate::{DynamoStore, SqsQueue, sdk_config};

/// Why the backend could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A queue does not exist (or cannot be reached).
    #[error("queue {name} not found ({reason}); run `flowgate aws bootstrap` first")]
    Queue {
        /// The queue name.
        name: String,
        /// The SDK's error chain.
        reason: String,
    },
}

/// The store and the queue.
pub struct Connected {
    /// The DynamoDB store.
    pub store: Arc<dyn Store>,
    /// The SQS queue.
    pub queue: Arc<dyn Queue>,
}

/// A queue setting's URL: the value itself when it is a URL (as template.yaml passes it, so
/// a cold start makes no call), else the URL of the queue of that name, looked up once.
async fn queue_url(sqs: &aws_sdk_sqs::Client, setting: &str) -> Result<String, ConnectError> {
    if setting.starts_with("https://") || setting.starts_with("http://") {
        return Ok(setting.to_owned());
    }
    let found = sqs
        .get_queue_url()
        .queue_name(setting)
        .send()
        .await
        .map_err(|e| ConnectError::Queue {
            name: setting.to_owned(),
            reason: flowgate_core::error::error_chain(&e),
        })?;
    Ok(found.queue_url.unwrap_or_default())
}

/// The ports on the table and queues `settings` name.
pub async fn connect(settings: &Settings) -> Result<Connected, ConnectError> {
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = queue_url(&sqs, &settings.queue).await?;
    let dlq = queue_url(&sqs, &settings.dlq).await?;
    Ok(Connected {
        store: Arc::new(DynamoStore::new(
            dynamo,
            &settings.table,
            settings.retention_days,
        )),
        queue: Arc::new(SqsQueue::new(sqs, queue, dlq)),
    })
}
