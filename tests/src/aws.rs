//! Subjects on the AWS adapters against a wire-protocol emulator (moto server), found
//! through `AWS_ENDPOINT_URL`. `infra/test.sh` starts moto and sets it; without it the AWS
//! tests are ignored, and fail loudly if forced to run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use flowgate_aws::bootstrap::{self, QueueSpec};
use flowgate_aws::{DynamoStore, SqsQueue, sdk_config};

use crate::conformance::{Caps, Subject};

/// Why AWS tests are ignored under a plain `cargo test`.
pub const NEEDS_MOTO: &str =
    "needs a moto server: run infra/test.sh (or set AWS_ENDPOINT_URL and pass --include-ignored)";

/// The table every AWS test shares; tests keep apart by random tenants.
pub const TABLE: &str = "flowgate-tests";

/// SDK clients for the emulator.
pub struct Clients {
    /// DynamoDB.
    pub dynamo: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

/// The clients, with the shared table created once.
pub async fn clients() -> &'static Clients {
    static CLIENTS: OnceCell<Clients> = OnceCell::const_new();
    CLIENTS
        .get_or_init(|| async {
            assert!(
                std::env::var_os("AWS_ENDPOINT_URL").is_some(),
                "AWS_ENDPOINT_URL is not set: the AWS tests need a moto server (infra/test.sh starts one)"
            );
            let config = sdk_config().await;
            let clients = Clients {
                dynamo: aws_sdk_dynamodb::Client::new(&config),
                sqs: aws_sdk_sqs::Client::new(&config),
            };
            bootstrap::table(&clients.dynamo, TABLE).await.expect("create the test table");
            clients
        })
        .await
}

/// A fresh queue pair (a small queue per test keeps moto fast) and the shared table.
pub async fn subject(visibility_timeout: Duration, max_receive_count: u32) -> Subject {
    let c = clients().await;
    let name = format!("fg-{}", uuid::Uuid::now_v7().simple());
    let (url, dlq_url) = bootstrap::queues(
        &c.sqs,
        &QueueSpec {
            dlq_name: format!("{name}-dlq"),
            name,
            visibility_timeout,
            max_receive_count,
        },
    )
    .await
    .expect("create test queues");
    Subject {
        store: Arc::new(DynamoStore::new(c.dynamo.clone(), TABLE, 7)),
        queue: Arc::new(SqsQueue::new(c.sqs.clone(), url, dlq_url)),
        // Schedules on AWS belong to EventBridge Scheduler, which is not built yet.
        schedules: None,
        caps: Caps {
            visibility_timeout,
            max_receive_count,
            liveness: false,
            outbox: false,
        },
        guard: Box::new(()),
    }
}
