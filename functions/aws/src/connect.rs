//! Connects the ports to the resources the settings name, for every AWS-backed host
//! (`flowgate serve --backend aws`, `flowgate dlq --backend aws` and the Lambda functions).

use std::sync::Arc;

use aws_sdk_sqs::types::QueueAttributeName;
use flowgate_core::ports::{Backfills, Queue, Schedules, Store};
use flowgate_settings::Settings;

use crate::scheduler::{EventBridgeSchedules, FireTarget};
use crate::{AwsSchedules, DynamoStore, SqsQueue, sdk_config};

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
    /// A schedule group is set without what its schedules need.
    #[error(
        "FLOWGATE_SCHEDULE_GROUP is set, so {0} must be too: EventBridge Scheduler assumes that role to send fires to the queue"
    )]
    Missing(&'static str),
}

/// The store, the queue, the backfills, and the schedules where a schedule group is set.
pub struct Connected {
    /// The DynamoDB store.
    pub store: Arc<dyn Store>,
    /// The SQS queue.
    pub queue: Arc<dyn Queue>,
    /// Schedules on DynamoDB, fired by EventBridge Scheduler.
    pub schedules: Option<Arc<dyn Schedules>>,
    /// Backfills on DynamoDB (the reconciler's runs move them forward).
    pub backfills: Arc<dyn Backfills>,
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

/// A queue's ARN: the setting when given (as template.yaml passes it), else looked up once.
async fn queue_arn(
    sqs: &aws_sdk_sqs::Client,
    setting: &str,
    url: &str,
) -> Result<String, ConnectError> {
    if !setting.is_empty() {
        return Ok(setting.to_owned());
    }
    let found = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ConnectError::Queue {
            name: url.to_owned(),
            reason: flowgate_core::error::error_chain(&e),
        })?;
    Ok(found
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default())
}

/// The ports on the table and queues `settings` name.
pub async fn connect(settings: &Settings) -> Result<Connected, ConnectError> {
    let sdk = sdk_config().await;
    let dynamo = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &settings.table,
        settings.retention_days,
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = queue_url(&sqs, &settings.queue).await?;
    let dlq = queue_url(&sqs, &settings.dlq).await?;
    let schedules = if settings.schedule_group.is_empty() {
        None
    } else {
        if settings.scheduler_role_arn.is_empty() {
            return Err(ConnectError::Missing("FLOWGATE_SCHEDULER_ROLE_ARN"));
        }
        let target = FireTarget {
            group: settings.schedule_group.clone(),
            role_arn: settings.scheduler_role_arn.clone(),
            queue_arn: queue_arn(&sqs, &settings.queue_arn, &queue).await?,
            dlq_arn: queue_arn(&sqs, &settings.dlq_arn, &dlq).await?,
        };
        let engine = EventBridgeSchedules::new(aws_sdk_scheduler::Client::new(&sdk), target);
        Some(Arc::new(AwsSchedules::new(dynamo.clone(), engine)) as Arc<dyn Schedules>)
    };
    Ok(Connected {
        backfills: Arc::new(dynamo.clone()),
        store: Arc::new(dynamo),
        queue: Arc::new(SqsQueue::new(sqs, queue, dlq)),
        schedules,
    })
}
