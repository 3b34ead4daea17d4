//! The pipeline under load and faults on the embedded backend: 5,000 requests at
//! concurrency 64, 20% reusing an earlier key (half with the same payload, half with a
//! different one), with faults injected at the store and queue ports (before and after the
//! call). After the drain: exactly one instance per accepted key, none for 422s, nothing
//! lost, and every request CREATED or DEAD with a reason.

use std::sync::Arc;
use std::time::Duration;

use flowgate_tests::http::App;
use flowgate_tests::pipeline::{drain, load, plan, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_requests_with_faults_and_key_reuse() {
    flowgate_tests::fixtures::init_tracing();
    let app = Arc::new(App::new());
    app.register("orders", true).await;
    // Creation fails often enough that a few requests exhaust their deliveries and end DEAD.
    app.faults
        .apply(
            "store.put=0.05:after,queue.send=0.05,store.update=0.02,store.get_workflow=0.02,\
             consumer.create=0.3,queue.ack=0.03:after,queue.receive=0.02,\
             queue.retry_later=0.05,queue.dead_letter=0.05",
        )
        .expect("plan");
    let _consumer = app.start_consumer();
    let _reconciler = app.start_reconciler(Duration::from_millis(600));

    let loaded = load(app.clone(), "default", "orders", &plan(5_000, 7), 64).await;
    assert!(
        loaded.conflicts > 300,
        "the plan reuses ~500 keys with other payloads: {}",
        loaded.conflicts
    );
    drain(&app, "default", &loaded, Duration::from_secs(120), || {
        tokio::time::sleep(Duration::from_millis(200))
    })
    .await;
    let (created, dead) = verify(&app, "default", "orders", &loaded).await;
    println!(
        "pipeline: 5000 requests, {} accepted keys, {created} created, {dead} dead, {} conflicts (422)",
        loaded.accepted.len(),
        loaded.conflicts
    );
}

/// The same load with a webhook target that fails one delivery in five, beside the port
/// faults: every created instance reaches the receiver, none is missing, and no instance
/// the receiver took was never created. Raw deliveries are reported apart from distinct
/// instance ids (a retry after a lost answer delivers twice; the receiver dedupes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hand_offs_with_faults_reach_the_receiver_once_each() {
    use flowgate_tests::receiver::{Answer, Receiver};
    flowgate_tests::fixtures::init_tracing();
    let rx = Receiver::start("pipeline-secret").await;
    rx.always(Answer::Flaky(20));
    let app = Arc::new(App::new());
    let body = serde_json::json!({"name": "hooked", "params_schema": {"type": "object"},
        "target": {"type": "webhook", "url": rx.url, "timeout": "2s", "secret": "pipeline-secret"}});
    let put = app
        .call_as(
            None,
            "PUT",
            "/v1/workflows/hooked",
            &[],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(put.status.as_u16(), 201, "{}", put.body);
    app.faults
        .apply(
            "store.put=0.05:after,queue.send=0.05,store.update=0.05,store.get_workflow=0.05,\
             consumer.create=0.1,queue.ack=0.05:after,queue.receive=0.02,\
             queue.retry_later=0.05,queue.dead_letter=0.05",
        )
        .expect("plan");
    let _consumer = app.start_consumer();
    let _reconciler = app.start_reconciler(Duration::from_millis(600));

    let loaded = load(app.clone(), "default", "hooked", &plan(1_000, 11), 64).await;
    drain(&app, "default", &loaded, Duration::from_secs(120), || {
        tokio::time::sleep(Duration::from_millis(200))
    })
    .await;
    let (created, dead) = verify(&app, "default", "hooked", &loaded).await;
    let mut handed = std::collections::HashSet::new();
    let mut instances = std::collections::HashSet::new();
    for (request_id, instance_id, _) in loaded.accepted.values() {
        let record = app
            .raw_store
            .get_request("default", request_id)
            .await
            .expect("read")
            .expect("record");
        if record.status == flowgate_core::model::RequestStatus::Dispatched {
            handed.insert(instance_id.clone());
        }
        instances.insert(instance_id.clone());
    }
    assert_eq!(
        handed.len(),
        created,
        "every created instance was handed off"
    );
    let accepted = rx.accepted();
    let missing: Vec<_> = handed.difference(&accepted).collect();
    assert!(
        missing.is_empty(),
        "recorded as dispatched, never received: {missing:?}"
    );
    assert!(
        accepted.is_subset(&instances),
        "received an instance never accepted"
    );
    assert!(rx.delivered().iter().all(|d| d.signed));
    println!(
        "pipeline hand-off: {} accepted keys, {created} dispatched, {dead} dead, {} distinct \
         received, {} raw deliveries",
        loaded.accepted.len(),
        accepted.len(),
        rx.delivered().len()
    );
}
