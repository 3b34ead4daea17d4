//! The Step Functions and EventBridge targets on moto: a hand-off through the whole
//! pipeline records the target's reference, and a second StartExecution of one instance
//! makes no second execution.

use std::time::Duration;

use serde_json::json;

use flowgate_core::model::RequestStatus;
use flowgate_core::ports::Dispatcher;
use flowgate_targets::Targets;
use flowgate_tests::aws::{NEEDS_MOTO, state_machine, subject};
use flowgate_tests::fixtures::{instance, record, tenant};
use flowgate_tests::http::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_second_start_execution_of_one_instance_makes_no_second_execution() {
    let _ = NEEDS_MOTO;
    let (sfn, arn) = state_machine().await;
    let targets = Targets::new(false);
    let target = json!({"type": "stepfunctions", "state_machine_arn": arn});
    let target = targets.check(&target).expect("a valid target");
    let r = record(&tenant(), "orders", chrono::Utc::now());
    let i = instance(&r, chrono::Utc::now());
    let first = targets.dispatch(&target, &i, None).await.expect("started");
    assert!(first.reference.contains(":execution:"), "{first:?}");
    assert!(first.reference.ends_with(&i.instance_id));
    let again = targets
        .dispatch(&target, &i, None)
        .await
        .expect("the same hand-off");
    assert_eq!(again, first);
    // Closed: the real service then answers ExecutionAlreadyExists, which counts as done.
    sfn.stop_execution()
        .execution_arn(&first.reference)
        .send()
        .await
        .expect("stop");
    let closed = targets
        .dispatch(&target, &i, None)
        .await
        .expect("still the same hand-off");
    assert_eq!(closed, first);
    let executions = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .expect("list");
    assert_eq!(
        executions.executions().len(),
        1,
        "one execution per instance"
    );
    let input = sfn
        .describe_execution()
        .execution_arn(&first.reference)
        .send()
        .await
        .expect("describe");
    let input: serde_json::Value =
        serde_json::from_str(input.input().unwrap_or("{}")).expect("JSON input");
    assert_eq!(input["instance_id"], i.instance_id.as_str());
    assert_eq!(input["request_id"], i.request_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn an_eventbridge_target_answers_its_event_id_and_a_missing_bus_is_permanent() {
    let targets = Targets::new(false);
    let r = record(&tenant(), "orders", chrono::Utc::now());
    let i = instance(&r, chrono::Utc::now());
    let target = json!({"type": "eventbridge", "event_bus": "default",
        "source": "flowgate.test", "detail_type": "InstanceCreated"});
    let receipt = targets.dispatch(&target, &i, None).await.expect("put");
    assert!(!receipt.reference.is_empty());
    let missing = json!({"type": "eventbridge", "event_bus": "no-such-bus",
        "source": "flowgate.test", "detail_type": "InstanceCreated"});
    let err = targets
        .dispatch(&missing, &i, None)
        .await
        .expect_err("no such bus");
    assert!(!err.retryable, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn instances_are_handed_to_step_functions_and_eventbridge_through_the_pipeline() {
    let s = subject(Duration::from_secs(1), 5).await;
    let app = App::over(s.store.clone(), s.queue.clone(), Box::new(()));
    let (_, arn) = state_machine().await;
    let t = tenant();
    for (code, target) in [
        (
            "machine",
            json!({"type": "stepfunctions", "state_machine_arn": arn}),
        ),
        (
            "events",
            json!({"type": "eventbridge", "event_bus": "default",
            "source": "flowgate.test", "detail_type": "InstanceCreated"}),
        ),
    ] {
        let body = json!({"name": code, "params_schema": {"type": "object"}, "target": target});
        let put = app
            .call_as(
                Some(&t),
                "PUT",
                &format!("/v1/workflows/{code}"),
                &[],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(put.status.as_u16(), 201, "{}", put.body);
    }
    let _consumer = app.start_consumer();
    for (code, kind) in [("machine", "stepfunctions"), ("events", "eventbridge")] {
        let started = app
            .call_as(
                Some(&t),
                "POST",
                &format!("/v1/workflows/{code}/instances"),
                &[],
                Some("{}"),
            )
            .await;
        assert_eq!(started.status.as_u16(), 202, "{}", started.body);
        let request_id = started.body["request_id"].as_str().expect("id").to_owned();
        let done = app
            .until_status(&t, &request_id, RequestStatus::Dispatched)
            .await;
        let dispatch = done.dispatch.expect("hand-off");
        assert_eq!(dispatch.target, kind);
        let reference = dispatch.reference.expect("reference");
        if kind == "stepfunctions" {
            assert!(
                reference.starts_with(&arn.replacen(":stateMachine:", ":execution:", 1)),
                "{reference}"
            );
        }
        let instance_id = started.body["instance_id"].as_str().expect("id");
        let view = app
            .call_as(
                Some(&t),
                "GET",
                &format!("/v1/instances/{instance_id}"),
                &[],
                None,
            )
            .await;
        assert_eq!(view.body["status"], "DISPATCHED");
        assert_eq!(view.body["dispatch"]["reference"], reference.as_str());
    }
}
