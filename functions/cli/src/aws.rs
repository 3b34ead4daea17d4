//! `flowgate aws bootstrap`: creates the AWS backend's resources on any endpoint.

use std::process::ExitCode;

use flowgate_aws::bootstrap::{self, QueueSpec};
use flowgate_aws::sdk_config;

use crate::config::{AwsArgs, AwsCommand};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `flowgate aws ...`.
pub async fn run(args: AwsArgs) -> Result<ExitCode> {
    let AwsCommand::Bootstrap = args.command;
    let settings = args.settings.0;
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    bootstrap::table(&dynamo, &settings.table)
        .await
        .map_err(|e| e.chain())?;
    let (queue_url, dlq_url) = bootstrap::queues(
        &sqs,
        &QueueSpec {
            name: settings.queue.clone(),
            dlq_name: settings.dlq.clone(),
            visibility_timeout: settings.visibility_timeout,
            max_receive_count: settings.max_receive_count,
        },
    )
    .await
    .map_err(|e| e.chain())?;
    if !settings.schedule_group.is_empty() {
        bootstrap::schedule_group(&sdk, &settings.schedule_group)
            .await
            .map_err(|e| e.chain())?;
    }
    println!(
        "{}",
        serde_json::json!({"table": settings.table, "queue_url": queue_url, "dlq_url": dlq_url,
            "schedule_group": settings.schedule_group})
    );
    Ok(ExitCode::SUCCESS)
}
