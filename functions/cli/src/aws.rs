//! The AWS backend from the command line: `flowgate aws bootstrap`, and the ports
//! `flowgate serve --backend aws` runs on.

use std::process::ExitCode;
use std::sync::Arc;

use flowgate_aws::bootstrap::{self, QueueSpec};
use flowgate_aws::{AwsConfig, sdk_config};
use flowgate_core::ports::{Queue, Store};

use crate::config::AwsCommand;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `flowgate aws ...`.
pub async fn run(command: AwsCommand) -> Result<ExitCode> {
    let AwsCommand::Bootstrap {
        max_receive_count,
        visibility_timeout,
    } = command;
    let config = AwsConfig::from_env()?;
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    bootstrap::table(&dynamo, &config.table)
        .await
        .map_err(|e| e.chain())?;
    let (queue_url, dlq_url) = bootstrap::queues(
        &sqs,
        &QueueSpec {
            name: config.queue.clone(),
            dlq_name: config.dlq.clone(),
            visibility_timeout,
            max_receive_count,
        },
    )
    .await
    .map_err(|e| e.chain())?;
    println!(
        "{}",
        serde_json::json!({"table": config.table, "queue_url": queue_url, "dlq_url": dlq_url})
    );
    Ok(ExitCode::SUCCESS)
}

/// The store and queue on the resources `bootstrap` created.
pub async fn ports() -> Result<(Arc<dyn Store>, Arc<dyn Queue>)> {
    let connected = flowgate_aws::connect().await?;
    Ok((connected.store, connected.queue))
}
