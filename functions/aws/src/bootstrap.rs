//! Creates the backend's resources on any endpoint, as template.yaml defines them: the
//! table (on-demand, two GSIs, TTL) and the queue with its DLQ (RedrivePolicy). Running it
//! again does no harm.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use flowgate_core::BackendError;

use crate::error::classify;

/// Settings of the queues to create.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Main queue name.
    pub name: String,
    /// Dead-letter queue name.
    pub dlq_name: String,
    /// Visibility timeout of the main queue.
    pub visibility_timeout: Duration,
    /// Deliveries before SQS moves a message to the DLQ.
    pub max_receive_count: u32,
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, BackendError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| BackendError::permanent("bootstrap.table", e))
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, BackendError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| BackendError::permanent("bootstrap.table", e))
}

fn index(name: &str, pk: &str, sk: &str) -> Result<GlobalSecondaryIndex, BackendError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| BackendError::permanent("bootstrap.table", e))
}

/// The audit's index: only what it counts is projected.
fn audit_index() -> Result<GlobalSecondaryIndex, BackendError> {
    GlobalSecondaryIndex::builder()
        .index_name("gsi3")
        .key_schema(key("gsi3pk", KeyType::Hash)?)
        .key_schema(key("gsi3sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    [
                        "request_id",
                        "workflow",
                        "status",
                        "accepted_at",
                        "pending_since",
                    ]
                    .map(String::from)
                    .to_vec(),
                ))
                .build(),
        )
        .build()
        .map_err(|e| BackendError::permanent("bootstrap.table", e))
}

/// Creates the table if it does not exist, and turns on its TTL.
pub async fn table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BackendError> {
    const OP: &str = "bootstrap.table";
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(index("gsi1", "gsi1pk", "gsi1sk")?)
        .global_secondary_indexes(index("gsi2", "gsi2pk", "gsi2sk")?)
        .global_secondary_indexes(audit_index()?);
    for attribute in [
        "pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk",
    ] {
        create = create.attribute_definitions(string_attribute(attribute)?);
    }
    match create.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(classify(OP, e)),
    }
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name("ttl")
        .enabled(true)
        .build()
        .map_err(|e| BackendError::permanent(OP, e))?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Already enabled: DynamoDB refuses to enable it twice.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                use aws_sdk_dynamodb::error::ProvideErrorMetadata;
                s.code() == Some("ValidationException")
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(classify(OP, e)),
    }
}

/// Creates the DLQ (14-day retention) and the main queue redriving to it; answers their URLs.
pub async fn queues(
    client: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
) -> Result<(String, String), BackendError> {
    const OP: &str = "bootstrap.queues";
    let dlq = client
        .create_queue()
        .queue_name(&spec.dlq_name)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            (14 * 86_400).to_string(),
        )
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    let dlq_url = dlq.queue_url.unwrap_or_default();
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify(OP, e))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| BackendError::permanent(OP, "the DLQ has no ARN"))?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": arn,
        "maxReceiveCount": spec.max_receive_count.to_string(),
    });
    let main = client
        .create_queue()
        .queue_name(&spec.name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            spec.visibility_timeout.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok((main.queue_url.unwrap_or_default(), dlq_url))
}

/// Creates the schedule group that holds Flowgate's EventBridge Scheduler schedules; one
/// that exists already is fine.
pub async fn schedule_group(sdk: &aws_config::SdkConfig, name: &str) -> Result<(), BackendError> {
    use aws_sdk_scheduler::error::ProvideErrorMetadata;
    let client = aws_sdk_scheduler::Client::new(sdk);
    match client.create_schedule_group().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ConflictException") => Ok(()),
        Err(e) => Err(classify("bootstrap.schedule_group", e)),
    }
}
