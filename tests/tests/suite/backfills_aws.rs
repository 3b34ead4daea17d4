//! Backfills on the AWS host, against moto: the records on DynamoDB, moved forward by the
//! reconciler function's scheduled runs, each date started through the keyed start path and
//! created by the consumer; a second backfill of the same dates skips them all; and a
//! DolphinScheduler complement is such a backfill.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_aws::{DynamoStore, SqsQueue};
use flowgate_core::usecases::{BackfillRunner, Reconciler};
use flowgate_tests::aws::{TABLE, clients, queue_pair};
use flowgate_tests::fixtures::tenant;
use flowgate_tests::http::App;

const B: &str = "/v1/workflows/orders/backfills";

async fn host() -> (App, String) {
    let c = clients().await;
    let (queue_url, dlq_url) = queue_pair(Duration::from_secs(1), 5).await;
    let store = Arc::new(DynamoStore::new(c.dynamo.clone(), TABLE, 7));
    let app = App::over(
        store.clone(),
        Arc::new(SqsQueue::new(c.sqs.clone(), queue_url, dlq_url)),
        Box::new(()),
    )
    .with_backfills(store);
    let tenant = tenant();
    app.register_as(Some(&tenant), "orders", true).await;
    (app, tenant)
}

/// One run of the reconciler function, as its EventBridge schedule invokes it.
async fn reconciler_run(app: &App) {
    let reconciler = Reconciler::new(
        app.store.clone(),
        app.queue.clone(),
        Duration::from_secs(60),
    );
    let runner = BackfillRunner::new(app.flowgate.clone());
    let event = serde_json::from_value(json!({
        "version": "0", "id": "5b1e4a2c-0d6e-4b8e-9d4a-2f1f3c2b1a00",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-30T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/flowgate-reconciler"],
        "detail": {}
    }))
    .expect("a scheduled event");
    flowgate_reconciler::handle(&reconciler, Some(&runner), event)
        .await
        .expect("the run");
}

async fn progress(app: &App, tenant: &str, id: &str) -> Value {
    let reply = app
        .call_as(
            Some(tenant),
            "GET",
            &format!("/v1/backfills/{id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The logical dates of the tenant's `orders` instances, sorted.
async fn logical_dates(app: &App, tenant: &str) -> Vec<String> {
    let uri = "/v1/workflows/orders/instances?limit=100";
    let listed = app.call_as(Some(tenant), "GET", uri, &[], None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let mut dates: Vec<String> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["logical_date"].as_str().map(str::to_owned))
        .collect();
    dates.sort_unstable();
    dates
}

async fn backfill(app: &App, tenant: &str, body: Value) -> String {
    let reply = app
        .call_as(Some(tenant), "POST", B, &[], Some(&body.to_string()))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body["backfill_id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_backfill_runs_on_the_reconcilers_schedule_and_a_second_one_skips_its_dates() {
    let (app, t) = host().await;
    let _consumer = app.start_consumer();
    let dates = json!([
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
        "2026-01-04T00:00:00Z",
        "2026-01-05T00:00:00Z"
    ]);
    let first = backfill(
        &app,
        &t,
        json!({"dates": dates, "max_in_flight": 2, "params": {"amount": 1}}),
    )
    .await;
    reconciler_run(&app).await;
    let done = progress(&app, &t, &first).await;
    assert_eq!(
        (
            &done["state"],
            &done["total"],
            &done["created"],
            &done["skipped"],
            &done["dead"]
        ),
        (&json!("done"), &json!(5), &json!(5), &json!(0), &json!(0)),
        "{done}"
    );

    let second = backfill(&app, &t, json!({"dates": dates, "params": {"amount": 1}})).await;
    reconciler_run(&app).await;
    let skipped = progress(&app, &t, &second).await;
    assert_eq!(
        (&skipped["state"], &skipped["created"], &skipped["skipped"]),
        (&json!("done"), &json!(0), &json!(5)),
        "{skipped}"
    );
    let dates = logical_dates(&app, &t).await;
    assert_eq!(dates.len(), 5, "one instance per date: {dates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_dolphinscheduler_complement_is_a_backfill_on_aws_too() {
    let (app, t) = host().await;
    let put = app
        .put_workflow_as(
            Some(&t),
            "orders",
            &json!({"name": "orders", "ds_code": 4242,
            "ds_project_code": 7, "params_schema": {"type": "object"}}),
        )
        .await;
    assert!(put.status.is_success(), "{}", put.body);
    let _consumer = app.start_consumer();
    let form = "processDefinitionCode=4242&execType=COMPLEMENT_DATA&failureStrategy=CONTINUE\
        &warningType=NONE&runMode=RUN_MODE_PARALLEL&expectedParallelismNumber=2\
        &scheduleTime=%7B%22complementScheduleDateList%22%3A%222026-02-01%2000%3A00%3A00%2C2026-02-02%2000%3A00%3A00%22%7D";
    let reply = app
        .call_as(
            Some(&t),
            "POST",
            "/dolphinscheduler/projects/7/executors/start-process-instance",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(form),
        )
        .await;
    assert_eq!(reply.body["code"], 0, "{}", reply.body);
    reconciler_run(&app).await;
    assert_eq!(
        logical_dates(&app, &t).await,
        ["2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z"]
    );
}
