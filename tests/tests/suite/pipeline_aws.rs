//! The pipeline on moto: 300 keyed requests (20% reusing a key) through the API with faults
//! at the store and queue ports, drained through the consumer Lambda handler with real SQS
//! event shapes, with the reconciler's sweep between batches. Exactly one instance per
//! accepted key, nothing lost.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use flowgate_core::ports::Queue;
use flowgate_core::usecases::{Consumer, ConsumerConfig, Reconciler};
use flowgate_tests::fixtures::tenant;
use flowgate_tests::http::App;
use flowgate_tests::pipeline::{drain, load, plan, verify};

/// Handles batches through the consumer handler until the queue looks empty.
async fn drain_queue(raw: &dyn Queue, faulty: &dyn Queue, consumer: &Consumer) {
    loop {
        let deliveries = raw
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive");
        if deliveries.is_empty() {
            return;
        }
        let records: Vec<_> = deliveries
            .iter()
            .map(|d| {
                json!({
                    "messageId": d.message_id, "receiptHandle": d.receipt, "body": d.body,
                    "attributes": {"ApproximateReceiveCount": d.receive_count.to_string()},
                    "messageAttributes": {
                        "tenant": {"stringValue": d.tenant, "dataType": "String"},
                        "request_id": {"stringValue": d.request_id, "dataType": "String"}
                    },
                    "eventSource": "aws:sqs"
                })
            })
            .collect();
        let event = serde_json::from_value(json!({"Records": records})).expect("SQS event");
        flowgate_consumer::handle(consumer, faulty, event).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn three_hundred_requests_through_the_consumer_handler_on_moto() {
    flowgate_tests::fixtures::init_tracing();
    let n: usize = std::env::var("PIPELINE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let subject = flowgate_tests::aws::subject(Duration::from_secs(1), 4).await;
    let app = Arc::new(App::over(
        subject.store.clone(),
        subject.queue.clone(),
        Box::new(()),
    ));
    let t = tenant();
    app.register_as(Some(&t), "orders", true).await;
    app.faults
        .apply("store.put=0.05:after,queue.send=0.05,consumer.create=0.2,store.update=0.02")
        .expect("plan");

    let loaded = load(app.clone(), &t, "orders", &plan(n, 11), 16).await;
    assert!(loaded.conflicts > 0);

    let consumer = Consumer::new(
        app.store.clone(),
        app.queue.clone(),
        ConsumerConfig {
            max_receive_count: 4,
            retry_base: Duration::ZERO,
            ..ConsumerConfig::default()
        },
    );
    // A request whose enqueue failed was still accepted: the reconciler sends it, as the
    // scheduled reconciler function would.
    let reconciler = Reconciler::new(app.store.clone(), app.queue.clone(), Duration::from_secs(1));
    // moto handles about ten consumer messages a second; leave room for its stalls.
    drain(&app, &t, &loaded, Duration::from_secs(400), || async {
        drain_queue(app.raw_queue.as_ref(), app.queue.as_ref(), &consumer).await;
        let _ = reconciler.sweep().await;
    })
    .await;
    let (created, dead) = verify(&app, &t, "orders", &loaded).await;
    println!(
        "pipeline on moto: {n} requests, {} accepted keys, {created} created, {dead} dead, {} conflicts",
        loaded.accepted.len(),
        loaded.conflicts
    );
}
