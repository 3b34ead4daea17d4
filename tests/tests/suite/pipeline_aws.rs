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

/// The batch route on DynamoDB and SQS: each start put conditionally (in parallel), the
/// accepted ones sent with `SendMessageBatch`, answered in order; the consumer then makes
/// exactly one instance per accepted start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_batch_on_moto_is_put_in_parallel_and_sent_in_batches() {
    let subject = flowgate_tests::aws::subject(Duration::from_secs(1), 4).await;
    let app = App::over(subject.store.clone(), subject.queue.clone(), Box::new(()));
    let t = tenant();
    app.register_as(Some(&t), "orders", true).await;
    let earlier = app
        .call_as(
            Some(&t),
            "POST",
            "/v1/workflows/orders/instances",
            &[("idempotency-key", "k0")],
            Some(r#"{"params":{"amount":1}}"#),
        )
        .await;
    assert_eq!(earlier.status, 202, "{}", earlier.body);
    let mut starts: Vec<serde_json::Value> = (1..=24)
        .map(|n| json!({"idempotency_key": format!("k{n}"), "params": {"amount": n}}))
        .collect();
    starts.push(json!({"idempotency_key": "k0", "params": {"amount": 1}}));
    starts.push(json!({"idempotency_key": "k0", "params": {"amount": 2}}));
    starts.push(json!({"params": {"amount": 0}}));
    let reply = app
        .call_as(
            Some(&t),
            "POST",
            "/v1/workflows/orders/instances/batch",
            &[],
            Some(&json!({ "starts": starts }).to_string()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_array().expect("results");
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    let mut expected = vec![202; 24];
    expected.extend([202, 422, 400]);
    assert_eq!(statuses, expected, "{}", reply.body);
    assert_eq!(results[24]["request_id"], earlier.body["request_id"]);
    assert_eq!(results[24]["replayed"], true);

    // A send that succeeds writes no note: each accepted start's history says only that it
    // was accepted until its creation notes when it was sent.
    let mut accepted: Vec<String> = results[..24]
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &accepted {
        let view = app
            .call_as(Some(&t), "GET", &format!("/v1/requests/{id}"), &[], None)
            .await;
        let events: Vec<&str> = view.body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["accepted"], "{}", view.body);
    }
    accepted.push(earlier.body["request_id"].as_str().unwrap().to_owned());

    let consumer = Consumer::new(
        app.store.clone(),
        app.queue.clone(),
        ConsumerConfig::default(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        drain_queue(app.raw_queue.as_ref(), app.queue.as_ref(), &consumer).await;
        let mut created = 0;
        for id in &accepted {
            let view = app
                .call_as(Some(&t), "GET", &format!("/v1/requests/{id}"), &[], None)
                .await;
            if view.body["status"] == "CREATED" {
                created += 1;
                let events: Vec<&str> = view.body["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["event"].as_str().unwrap())
                    .collect();
                assert_eq!(events, ["accepted", "enqueued", "created"], "{}", view.body);
            }
        }
        if created == accepted.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{created} of {} created",
            accepted.len()
        );
    }
    let page = app
        .call_as(
            Some(&t),
            "GET",
            "/v1/workflows/orders/instances?limit=100",
            &[],
            None,
        )
        .await;
    let mut listed: Vec<String> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["request_id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    accepted.sort();
    assert_eq!(listed, accepted, "one instance per accepted start");
}

/// SQS fair queues: every message, sent alone or in a batch, carries its tenant as its
/// `MessageGroupId`, so a tenant's flood does not hold the other tenants up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn every_message_carries_its_tenant_as_its_message_group() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    use flowgate_core::ports::Envelope;
    let (url, dlq_url) = flowgate_tests::aws::queue_pair(Duration::from_secs(30), 4).await;
    let sqs = flowgate_tests::aws::clients().await.sqs.clone();
    let queue = flowgate_aws::SqsQueue::new(sqs.clone(), url.clone(), dlq_url);
    let envelope = |tenant: &str, n: usize| Envelope {
        tenant: tenant.to_owned(),
        request_id: format!("r-{tenant}-{n}"),
        body: format!("{{\"n\":{n}}}"),
        traceparent: None,
    };
    queue.send(&envelope("alone", 0)).await.expect("a send");
    let batch: Vec<Envelope> = (0..6)
        .map(|n| envelope(if n % 2 == 0 { "acme" } else { "globex" }, n))
        .collect();
    for sent in queue.send_batch(&batch).await {
        sent.expect("each message of the batch is sent");
    }
    let mut groups = std::collections::BTreeMap::<String, String>::new();
    while groups.len() < 7 {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .expect("a receive");
        let messages = out.messages.unwrap_or_default();
        assert!(!messages.is_empty(), "only {} of 7 received", groups.len());
        for m in messages {
            let request = m.message_attributes().and_then(|a| a.get("request_id"));
            let request = request
                .and_then(|v| v.string_value())
                .expect("a request id");
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            groups.insert(request.to_owned(), group);
        }
    }
    for (request, group) in &groups {
        let tenant = request.split('-').nth(1).expect("the tenant in the id");
        assert_eq!(group, tenant, "{groups:?}");
    }
}
