//! Subjects on the AWS adapters against a wire-protocol emulator (moto server), found
//! through `AWS_ENDPOINT_URL`. `infra/test.sh` starts moto and sets it; without it the AWS
//! tests are ignored, and fail loudly if forced to run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use aws_sdk_sqs::types::QueueAttributeName;
use flowgate_aws::bootstrap::{self, QueueSpec};
use flowgate_aws::scheduler::{EventBridgeSchedules, FireTarget};
use flowgate_aws::{AwsSchedules, DynamoStore, SqsQueue, sdk_config};

use crate::conformance::{Caps, Subject};

/// Why AWS tests are ignored under a plain `cargo test`.
pub const NEEDS_MOTO: &str =
    "needs a moto server: run infra/test.sh (or set AWS_ENDPOINT_URL and pass --include-ignored)";

/// The table every AWS test shares; tests keep apart by random tenants.
pub const TABLE: &str = "flowgate-tests";

/// The schedule group every AWS test shares.
pub const SCHEDULE_GROUP: &str = "flowgate-tests";

/// The role EventBridge Scheduler would assume (moto does not check it).
pub const SCHEDULER_ROLE: &str = "arn:aws:iam::123456789012:role/flowgate-scheduler";

/// SDK clients for the emulator.
pub struct Clients {
    /// DynamoDB.
    pub dynamo: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge Scheduler.
    pub scheduler: aws_sdk_scheduler::Client,
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
                scheduler: aws_sdk_scheduler::Client::new(&config),
            };
            bootstrap::table(&clients.dynamo, TABLE).await.expect("create the test table");
            bootstrap::schedule_group(&config, SCHEDULE_GROUP)
                .await
                .expect("create the test schedule group");
            clients
        })
        .await
}

/// A queue's ARN.
pub async fn queue_arn(url: &str) -> String {
    let out = clients()
        .await
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .expect("an ARN")
}

/// Schedules on `table`, synced to the shared group, firing into these queues.
pub async fn schedules(table: &str, queue_url: &str, dlq_url: &str) -> AwsSchedules {
    let c = clients().await;
    let target = FireTarget {
        group: SCHEDULE_GROUP.into(),
        role_arn: SCHEDULER_ROLE.into(),
        queue_arn: queue_arn(queue_url).await,
        dlq_arn: queue_arn(dlq_url).await,
    };
    AwsSchedules::new(
        DynamoStore::new(c.dynamo.clone(), table, 7),
        EventBridgeSchedules::new(c.scheduler.clone(), target),
    )
}

/// A fresh queue pair and a fresh table: small ones keep moto fast, and a table of its own
/// keeps each test's items apart from every other's.
pub async fn subject(visibility_timeout: Duration, max_receive_count: u32) -> Subject {
    let c = clients().await;
    let (url, dlq_url) = queue_pair(visibility_timeout, max_receive_count).await;
    let table = format!("fg-{}", uuid::Uuid::now_v7().simple());
    bootstrap::table(&c.dynamo, &table)
        .await
        .expect("create the test's table");
    let schedules = schedules(&table, &url, &dlq_url).await;
    let damaged = table.clone();
    let corrupt: crate::conformance::Corrupt =
        Arc::new(move |tenant: String, request_id: String| {
            let table = damaged.clone();
            Box::pin(async move {
                use aws_sdk_dynamodb::types::AttributeValue;
                clients()
                    .await
                    .dynamo
                    .update_item()
                    .table_name(table)
                    .key(
                        "pk",
                        AttributeValue::S(format!("T#{tenant}#R#{request_id}")),
                    )
                    .key("sk", AttributeValue::S("R".into()))
                    .update_expression("SET spec = :bad")
                    .expression_attribute_values(
                        ":bad",
                        AttributeValue::S("{\"workflow\": ".into()),
                    )
                    .send()
                    .await
                    .expect("damage the record");
            })
        });
    Subject {
        store: Arc::new(DynamoStore::new(c.dynamo.clone(), &table, 7)),
        queue: Arc::new(SqsQueue::new(c.sqs.clone(), url, dlq_url)),
        schedules: Some(Arc::new(schedules)),
        backfills: Some(Arc::new(DynamoStore::new(c.dynamo.clone(), &table, 7))),
        caps: Caps {
            visibility_timeout,
            max_receive_count,
            liveness: false,
            outbox: false,
            sweeps: false,
            self_expiring: true,
        },
        corrupt,
        guard: Box::new(()),
    }
}

/// A fresh queue and its dead-letter queue: their URLs.
pub async fn queue_pair(visibility_timeout: Duration, max_receive_count: u32) -> (String, String) {
    let c = clients().await;
    let name = format!("fg-{}", uuid::Uuid::now_v7().simple());
    bootstrap::queues(
        &c.sqs,
        &QueueSpec {
            dlq_name: format!("{name}-dlq"),
            name,
            visibility_timeout,
            max_receive_count,
        },
    )
    .await
    .expect("create test queues")
}

/// The role a state machine runs as (moto does not check it).
pub const STATE_MACHINE_ROLE: &str = "arn:aws:iam::123456789012:role/flowgate-targets";

/// A fresh state machine that succeeds at once: a Step Functions client, and its ARN.
pub async fn state_machine() -> (aws_sdk_sfn::Client, String) {
    let config = sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&config);
    let definition =
        serde_json::json!({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}});
    let made = sfn
        .create_state_machine()
        .name(format!("fg-{}", uuid::Uuid::now_v7().simple()))
        .definition(definition.to_string())
        .role_arn(STATE_MACHINE_ROLE)
        .send()
        .await
        .expect("create a state machine");
    (sfn, made.state_machine_arn)
}
