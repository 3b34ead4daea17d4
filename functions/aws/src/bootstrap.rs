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

fn index(
    name: &str,
    pk: &str,
    sk: &str,
    projection: ProjectionType,
) -> Result<GlobalSecondaryIndex, BackendError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(Projection::builder().projection_type(projection).build())
        .build()
        .map_err(|e| BackendError::permanent("bootstrap.table", e))
}

/// The audit's index of items written before `gsi4`: only what it counts is projected.
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

/// The table's global secondary indexes (see `items.rs`).
fn indexes() -> Result<Vec<GlobalSecondaryIndex>, BackendError> {
    Ok(vec![
        index("gsi1", "gsi1pk", "gsi1sk", ProjectionType::All)?,
        index("gsi2", "gsi2pk", "gsi2sk", ProjectionType::All)?,
        audit_index()?,
        // Keys only: written once (at acceptance, at creation), never by a later update.
        index("gsi4", "gsi4pk", "gsi4sk", ProjectionType::KeysOnly)?,
        index("gsi5", "gsi5pk", "gsi5sk", ProjectionType::KeysOnly)?,
    ])
}

/// Every key attribute of the table and its indexes.
const KEY_ATTRIBUTES: [&str; 12] = [
    "pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "gsi4pk", "gsi4sk",
    "gsi5pk", "gsi5sk",
];

/// Creates the table if it does not exist, adds the indexes an older table lacks, and turns
/// on its TTL.
pub async fn table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BackendError> {
    const OP: &str = "bootstrap.table";
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .set_global_secondary_indexes(Some(indexes()?));
    for attribute in KEY_ATTRIBUTES {
        create = create.attribute_definitions(string_attribute(attribute)?);
    }
    match create.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            add_missing_indexes(client, name).await?;
        }
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

/// Adds to an existing table each index it lacks (a table made by an earlier version), one
/// at a time, as DynamoDB allows, waiting for each to be built.
async fn add_missing_indexes(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BackendError> {
    const OP: &str = "bootstrap.indexes";
    for wanted in indexes()? {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let table = described
            .table
            .ok_or_else(|| BackendError::permanent(OP, "DescribeTable answered no table"))?;
        let present = table
            .global_secondary_indexes()
            .iter()
            .any(|g| g.index_name() == Some(wanted.index_name()));
        if present {
            continue;
        }
        tracing::warn!(
            table = name,
            index = wanted.index_name(),
            "adding a missing index"
        );
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(wanted.index_name())
            .set_key_schema(Some(wanted.key_schema().to_vec()))
            .set_projection(wanted.projection().cloned())
            .build()
            .map_err(|e| BackendError::permanent(OP, e))?;
        let mut update = client
            .update_table()
            .table_name(name)
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(create)
                    .build(),
            );
        for k in wanted.key_schema() {
            update = update.attribute_definitions(string_attribute(k.attribute_name())?);
        }
        update.send().await.map_err(|e| classify(OP, e))?;
        wait_until_built(client, name, wanted.index_name()).await?;
    }
    Ok(())
}

/// Waits (up to an hour) until `index` of `table` is active.
async fn wait_until_built(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    index: &str,
) -> Result<(), BackendError> {
    const OP: &str = "bootstrap.indexes";
    for _ in 0..720 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let active = described.table.is_some_and(|t| {
            t.global_secondary_indexes().iter().any(|g| {
                g.index_name() == Some(index)
                    && g.index_status()
                        .is_none_or(|s| *s == aws_sdk_dynamodb::types::IndexStatus::Active)
            })
        });
        if active {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    Err(BackendError::retryable(
        OP,
        format!("index {index} of {table} was not built within an hour"),
    ))
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
