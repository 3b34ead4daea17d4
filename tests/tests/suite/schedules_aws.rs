//! Schedules on the AWS host, against moto: each Flowgate schedule is an EventBridge
//! Scheduler schedule, created, replaced, paused and deleted with it; what EventBridge
//! Scheduler cannot run is refused; and a fire, handed to the consumer function as the
//! scheduler delivers it to the queue (twice, as at-least-once delivery may), starts
//! exactly one instance for its logical date, with the schedule's history trail.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_scheduler::types::{FlexibleTimeWindowMode, ScheduleState};
use serde_json::{Value, json};

use flowgate_aws::scheduler::{SCHEDULED_TIME, schedule_name};
use flowgate_aws::{DynamoStore, SqsQueue};
use flowgate_core::usecases::Consumer;
use flowgate_tests::aws::{
    SCHEDULE_GROUP, SCHEDULER_ROLE, TABLE, clients, queue_arn, queue_pair, schedules,
};
use flowgate_tests::fixtures::{consumer_config, tenant};
use flowgate_tests::http::App;
use flowgate_tests::sqs_event::batch;

const S: &str = "/v1/workflows/orders/schedules/nightly";

struct Host {
    app: App,
    tenant: String,
    queue_url: String,
    dlq_url: String,
}

async fn host() -> Host {
    let c = clients().await;
    let (queue_url, dlq_url) = queue_pair(Duration::from_secs(1), 5).await;
    let app = App::over(
        Arc::new(DynamoStore::new(c.dynamo.clone(), TABLE, 7)),
        Arc::new(SqsQueue::new(
            c.sqs.clone(),
            queue_url.clone(),
            dlq_url.clone(),
        )),
        Box::new(()),
    )
    .with_schedules(Arc::new(schedules(TABLE, &queue_url, &dlq_url).await));
    let tenant = tenant();
    app.register_as(Some(&tenant), "orders", true).await;
    Host {
        app,
        tenant,
        queue_url,
        dlq_url,
    }
}

impl Host {
    async fn put(&self, body: Value) -> flowgate_tests::http::Reply {
        let body = body.to_string();
        self.app
            .call_as(Some(&self.tenant), "PUT", S, &[], Some(&body))
            .await
    }

    async fn engine_schedule(
        &self,
    ) -> Result<
        aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput,
        aws_sdk_scheduler::error::SdkError<
            aws_sdk_scheduler::operation::get_schedule::GetScheduleError,
        >,
    > {
        clients()
            .await
            .scheduler
            .get_schedule()
            .name(schedule_name(&self.tenant, "orders", "nightly"))
            .group_name(SCHEDULE_GROUP)
            .send()
            .await
    }

    /// The consumer function as template.yaml runs it: fires start through the use cases.
    fn consumer(&self) -> Consumer {
        Consumer::new(
            self.app.store.clone(),
            self.app.queue.clone(),
            consumer_config(5, Duration::from_secs(1)),
        )
        .with_fires(self.app.flowgate.clone())
    }

    /// Sends `bodies` to the queue as EventBridge Scheduler does (a body, no attributes),
    /// and hands them to the consumer function in one SQS event.
    async fn deliver(&self, bodies: &[String]) {
        let sqs = &clients().await.sqs;
        for body in bodies {
            sqs.send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .send()
                .await
                .expect("send the fire");
        }
        let (_, event) = batch(self.app.queue.as_ref(), bodies.len()).await;
        let response =
            flowgate_consumer::handle(&self.consumer(), self.app.queue.as_ref(), event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "every fire was handled"
        );
    }

    /// Creates the instances of whatever start messages the fires enqueued.
    async fn drain(&self) {
        let consumer = self.consumer();
        for _ in 0..20 {
            let deliveries = self
                .app
                .queue
                .receive(10, Duration::from_millis(200))
                .await
                .expect("receive");
            if deliveries.is_empty() {
                return;
            }
            for d in deliveries {
                consumer.handle(d).await;
            }
        }
    }

    async fn instances(&self) -> Vec<Value> {
        let reply = self
            .app
            .call_as(
                Some(&self.tenant),
                "GET",
                "/v1/workflows/orders/instances",
                &[],
                None,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["items"].as_array().expect("items").clone()
    }
}

/// A host whose `orders` workflow has an hourly schedule `nightly`.
async fn hourly() -> Host {
    let host = host().await;
    let created = host
        .put(json!({"cron": "0 * * * *", "params": {"amount": 2}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    host
}

/// The body EventBridge Scheduler sends for the fire at `at`: the schedule's target input,
/// with its scheduled-time placeholder replaced.
async fn fire_body(host: &Host, at: &str) -> String {
    let schedule = host.engine_schedule().await.expect("the schedule exists");
    let input = schedule
        .target()
        .and_then(|t| t.input())
        .expect("a target input");
    assert!(input.contains(SCHEDULED_TIME), "{input}");
    input.replace(SCHEDULED_TIME, at)
}

#[tokio::test]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn each_schedule_is_an_eventbridge_schedule_created_paused_replaced_and_deleted() {
    let host = host().await;
    let created = host
        .put(json!({"cron": "0 0 2 * * ? *", "timezone": "Europe/Berlin",
            "params": {"amount": 2}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["next_fire_times"].as_array().map(Vec::len),
        Some(5)
    );

    let engine = host.engine_schedule().await.expect("created in the group");
    assert_eq!(engine.schedule_expression(), Some("cron(0 2 * * ? *)"));
    assert_eq!(engine.schedule_expression_timezone(), Some("Europe/Berlin"));
    assert_eq!(engine.state(), Some(&ScheduleState::Enabled));
    assert_eq!(
        engine.flexible_time_window().map(|w| w.mode()),
        Some(&FlexibleTimeWindowMode::Off),
        "fires at its exact time"
    );
    let target = engine.target().expect("a target");
    assert_eq!(
        target.arn(),
        queue_arn(&host.queue_url).await,
        "fires go to the queue"
    );
    assert_eq!(target.role_arn(), SCHEDULER_ROLE);
    assert_eq!(
        target.dead_letter_config().and_then(|d| d.arn()),
        Some(queue_arn(&host.dlq_url).await.as_str()),
        "undeliverable fires go to the DLQ"
    );
    let input: Value = serde_json::from_str(target.input().expect("input")).expect("JSON");
    assert_eq!(
        input,
        json!({"v": 1, "fire": {"tenant": host.tenant, "workflow": "orders",
            "schedule_id": "nightly", "logical_date": SCHEDULED_TIME}})
    );

    let paused = host
        .put(json!({"rate": "rate(5 minutes)", "params": {"amount": 2}, "paused": true}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    let engine = host.engine_schedule().await.expect("still there");
    assert_eq!(engine.state(), Some(&ScheduleState::Disabled));
    assert_eq!(engine.schedule_expression(), Some("rate(5 minutes)"));
    assert_eq!(engine.schedule_expression_timezone(), Some("UTC"));

    for (body, pointer) in [
        (
            json!({"cron": "*/10 * * * * *", "params": {"amount": 2}}),
            "/cron",
        ),
        (
            json!({"rate": "rate(30 seconds)", "params": {"amount": 2}}),
            "/rate",
        ),
        (
            json!({"cron": "0 12 1 * 1", "params": {"amount": 2}}),
            "/cron",
        ),
    ] {
        let refused = host.put(body).await;
        refused.assert_problem(400, "invalid-request");
        assert_eq!(
            refused.body["errors"][0]["pointer"], pointer,
            "{}",
            refused.body
        );
    }
    let engine = host.engine_schedule().await.expect("still there");
    assert_eq!(
        engine.schedule_expression(),
        Some("rate(5 minutes)"),
        "a refused put changes nothing"
    );

    let deleted = host
        .app
        .call_as(Some(&host.tenant), "DELETE", S, &[], None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = host.engine_schedule().await.expect_err("deleted with it");
    assert_eq!(
        aws_sdk_scheduler::error::ProvideErrorMetadata::code(&gone),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_fire_delivered_twice_starts_one_instance_for_its_logical_date() {
    let host = hourly().await;
    let fire = fire_body(&host, "2026-12-01T01:00:00Z").await;

    host.deliver(&[fire.clone(), fire.clone()]).await;
    host.drain().await;
    host.deliver(&[fire]).await;
    host.drain().await;

    let instances = host.instances().await;
    assert_eq!(instances.len(), 1, "one instance per fire: {instances:?}");
    assert_eq!(instances[0]["logical_date"], "2026-12-01T01:00:00Z");
    let request_id = instances[0]["request_id"].as_str().expect("request id");
    let request = host
        .app
        .call_as(
            Some(&host.tenant),
            "GET",
            &format!("/v1/requests/{request_id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(request.body["status"], "CREATED", "{}", request.body);
    assert_eq!(request.body["schedule_id"], "nightly");
    assert_eq!(request.body["logical_date"], "2026-12-01T01:00:00Z");
    assert_eq!(
        request.body["history"][0]["detail"],
        "fired by schedule nightly for 2026-12-01T01:00:00Z"
    );

    // Paused or deleted since the engine fired: the fire starts nothing.
    let paused = host
        .put(json!({"cron": "0 * * * *", "params": {"amount": 2}, "paused": true}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    host.deliver(&[fire_body(&host, "2026-12-01T02:00:00Z").await])
        .await;
    let late = fire_body(&host, "2026-12-01T03:00:00Z").await;
    let deleted = host
        .app
        .call_as(Some(&host.tenant), "DELETE", S, &[], None)
        .await;
    assert_eq!(deleted.status, 204);
    host.deliver(&[late]).await;
    host.drain().await;
    assert_eq!(host.instances().await.len(), 1);
}

#[tokio::test]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_fire_that_cannot_start_is_dead_lettered_with_its_reason_and_replays() {
    let host = hourly().await;
    let fire = fire_body(&host, "2026-12-01T05:00:00Z").await;
    host.app
        .register_as(Some(&host.tenant), "orders", false)
        .await;

    host.deliver(&[fire]).await;
    let letters = host
        .app
        .call_as(Some(&host.tenant), "GET", "/v1/dlq", &[], None)
        .await;
    let items = letters.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{}", letters.body);
    assert_eq!(items[0]["workflow"], "orders");
    assert_eq!(items[0]["error_kind"], "permanent");
    assert!(
        items[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("offline"),
        "{}",
        items[0]
    );

    host.app
        .register_as(Some(&host.tenant), "orders", true)
        .await;
    let replayed = host
        .app
        .call_as(
            Some(&host.tenant),
            "POST",
            "/v1/dlq/replay",
            &[],
            Some("{}"),
        )
        .await;
    assert_eq!(replayed.body["replayed"], 1, "{}", replayed.body);
    for _ in 0..3 {
        host.drain().await;
    }
    let instances = host.instances().await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["logical_date"], "2026-12-01T05:00:00Z");
}
