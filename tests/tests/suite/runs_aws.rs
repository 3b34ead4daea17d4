//! Runs on the cloud host, on moto: a Step Functions status change put on the queue in the
//! exact shape EventBridge delivers it is recorded on its instance (an event about another
//! execution changes nothing), and a target's report through the callback path is kept on
//! the DynamoDB item.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_aws::{DynamoStore, SqsQueue, bootstrap};
use flowgate_core::model::RequestStatus;
use flowgate_core::ports::{Queue, Store};
use flowgate_core::runs::{Report, RunStatus};
use flowgate_core::usecases::Consumer;
use flowgate_tests::aws::{NEEDS_MOTO, TABLE, clients, queue_pair, state_machine};
use flowgate_tests::fixtures::{consumer_config, tenant};
use flowgate_tests::http::App;

/// The body EventBridge puts on a queue for an execution's status change.
fn status_change(arn: &str, machine: &str, name: &str, status: &str, input: &str) -> String {
    json!({
        "version": "0",
        "id": uuid::Uuid::now_v7().to_string(),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "startDate": chrono::Utc::now().timestamp_millis() - 1000,
            "stopDate": chrono::Utc::now().timestamp_millis(),
            "input": input,
            "inputDetails": {"included": true},
            "output": "{\"rows\":3}",
            "outputDetails": {"included": true},
            "error": null,
            "cause": null
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn status_changes_and_callbacks_are_kept_on_the_cloud_host() {
    let _ = (NEEDS_MOTO, TABLE);
    let c = clients().await;
    let (url, dlq_url) = queue_pair(Duration::from_secs(1), 5).await;
    let table = format!("fg-{}", uuid::Uuid::now_v7().simple());
    bootstrap::table(&c.dynamo, &table).await.expect("a table");
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(c.dynamo.clone(), &table, 7));
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(c.sqs.clone(), url.clone(), dlq_url));
    let app = App::over(store.clone(), queue.clone(), Box::new(()));

    let (sfn, machine) = state_machine().await;
    let t = tenant();
    let body = json!({"name": "machine", "params_schema": {"type": "object"},
        "target": {"type": "stepfunctions", "state_machine_arn": machine}});
    let put = app
        .call_as(
            Some(&t),
            "PUT",
            "/v1/workflows/machine",
            &[],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(put.status.as_u16(), 201, "{}", put.body);
    let consumer = Consumer::new(
        store.clone(),
        queue.clone(),
        consumer_config(5, Duration::from_secs(1)),
    )
    .with_dispatcher(app.dispatcher.clone())
    .with_reports(app.flowgate.clone(), flowgate_aws::states::decode);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::new(consumer).run(stopped));

    let mut handed = Vec::new();
    for _ in 0..2 {
        let started = app
            .call_as(
                Some(&t),
                "POST",
                "/v1/workflows/machine/instances",
                &[],
                Some("{}"),
            )
            .await;
        assert_eq!(started.status.as_u16(), 202, "{}", started.body);
        let request_id = started.body["request_id"].as_str().expect("id").to_owned();
        let done = app
            .until_status(&t, &request_id, RequestStatus::Dispatched)
            .await;
        let arn = done
            .dispatch
            .and_then(|d| d.reference)
            .expect("an execution");
        handed.push((done.instance_id, arn));
    }

    // The first execution's status change, as EventBridge delivers it (no attributes).
    let (id, arn) = &handed[0];
    let input = sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .expect("describe")
        .input()
        .unwrap_or("{}")
        .to_owned();
    for status in ["RUNNING", "SUCCEEDED"] {
        c.sqs
            .send_message()
            .queue_url(&url)
            .message_body(status_change(arn, &machine, id, status, &input))
            .send()
            .await
            .expect("an event");
    }
    // An event about another execution of the same name is dropped.
    c.sqs
        .send_message()
        .queue_url(&url)
        .message_body(status_change(
            &format!("{arn}-other"),
            &machine,
            id,
            "FAILED",
            &input,
        ))
        .send()
        .await
        .expect("an event");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let shown = app
            .call_as(Some(&t), "GET", &format!("/v1/instances/{id}"), &[], None)
            .await
            .body;
        if shown["status"] == "SUCCEEDED" || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(shown["status"], "SUCCEEDED", "{shown}");
    assert_eq!(shown["run"]["output"]["rows"], 3, "{shown}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still: Value = app
        .call_as(Some(&t), "GET", &format!("/v1/instances/{id}"), &[], None)
        .await
        .body;
    assert_eq!(
        still["status"], "SUCCEEDED",
        "another execution's event changed it: {still}"
    );

    // A report through the callback path, kept on the item; the rules hold there too.
    let (other, _) = &handed[1];
    let failed = app
        .flowgate
        .report_status(
            &t,
            other,
            Report {
                status: RunStatus::Failed,
                detail: Some("boom".into()),
                output: None,
                by: "a test".into(),
            },
        )
        .await
        .expect("recorded");
    assert_eq!(failed.status.as_str(), "FAILED");
    let again = app
        .flowgate
        .report_status(
            &t,
            other,
            Report {
                status: RunStatus::Succeeded,
                detail: None,
                output: None,
                by: "a test".into(),
            },
        )
        .await;
    assert!(
        matches!(again, Err(flowgate_core::Error::Conflict(_))),
        "{again:?}"
    );
    let record = store
        .get_request(&t, &failed.request_id)
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(record.run.map(|r| r.status), Some(RunStatus::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_limit_queues_in_priority_order_on_the_cloud_host() {
    let subject = flowgate_tests::aws::subject(Duration::from_secs(1), 5).await;
    let app = App::over(subject.store.clone(), subject.queue.clone(), Box::new(()));
    crate::runs::a_limit_queues_in_priority_order(&crate::runs::runs_on(app).await).await;
}

/// The embedded host learns where a Step Functions run is by asking: its reconciler polls
/// `DescribeExecution` for quiet unfinished runs (a bounded batch each sweep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn the_embedded_reconciler_asks_step_functions_where_a_quiet_run_is() {
    let app = App::new();
    let (sfn, machine) = state_machine().await;
    let body = json!({"name": "machine", "params_schema": {"type": "object"},
        "target": {"type": "stepfunctions", "state_machine_arn": machine}});
    let put = app
        .call("PUT", "/v1/workflows/machine", &[], Some(&body.to_string()))
        .await;
    assert_eq!(put.status.as_u16(), 201, "{}", put.body);
    let _consumer = app.start_consumer();
    let started = app
        .call("POST", "/v1/workflows/machine/instances", &[], Some("{}"))
        .await;
    let request_id = started.body["request_id"].as_str().expect("id").to_owned();
    let instance_id = started.body["instance_id"].as_str().expect("id").to_owned();
    let done = app
        .until_status("default", &request_id, RequestStatus::Dispatched)
        .await;
    let arn = done
        .dispatch
        .and_then(|d| d.reference)
        .expect("an execution");
    let reconciler = flowgate_core::usecases::Reconciler::new(
        app.store.clone(),
        app.queue.clone(),
        Duration::ZERO,
    )
    .with_dispatcher(app.dispatcher.clone());
    let uri = format!("/v1/instances/{instance_id}");
    let status = || async { app.call("GET", &uri, &[], None).await.body };
    // Running, as the service says.
    let swept = reconciler.sweep().await.expect("a sweep");
    assert_eq!(swept.polled, 1, "{swept:?}");
    let shown = status().await;
    assert_eq!(shown["status"], "RUNNING", "{shown}");
    // Stopped outside Flowgate (its event missed): the next sweep finds it ended.
    sfn.stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .expect("stop");
    tokio::time::sleep(Duration::from_millis(10)).await;
    reconciler.sweep().await.expect("a sweep");
    let shown = status().await;
    assert_eq!(shown["status"], "CANCELLED", "{shown}");
    assert!(!shown["run"]["detail"].is_null(), "{shown}");
    // An ended run is asked about no more.
    let swept = reconciler.sweep().await.expect("a sweep");
    assert_eq!(swept.polled, 0, "{swept:?}");
}
