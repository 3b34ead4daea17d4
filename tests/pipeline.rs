//! The pipeline under load and faults: 5,000 requests at concurrency 64, 20% reusing an
//! earlier key (half with the same payload, half with a different one), with faults
//! injected at the store and queue ports. After the drain: exactly one instance per accepted
//! key, none for 422s, nothing lost, and every request CREATED or DEAD with a reason.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use flowgate_core::model::{InstanceCursor, RequestStatus};
use flowgate_tests::http::App;

const REQUESTS: usize = 5_000;
const CONCURRENCY: usize = 64;
const START: &str = "/v1/workflows/orders/instances";

/// One planned request: its key and payload.
#[derive(Clone)]
struct Planned {
    key: String,
    payload: Value,
}

/// What the client finally got for a request (after retrying 503s with the same key).
#[derive(Debug)]
enum Answer {
    Accepted {
        request_id: String,
        instance_id: String,
    },
    Conflict,
    GaveUp,
}

fn plan() -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut planned: Vec<Planned> = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let roll = rng.u32(0..100);
        if i >= 100 && roll < 20 {
            let earlier = planned[rng.usize(0..i)].clone();
            let payload = if roll < 10 {
                earlier.payload.clone()
            } else {
                json!({"params": {"amount": 1_000_000 + i}})
            };
            planned.push(Planned {
                key: earlier.key,
                payload,
            });
        } else {
            planned.push(Planned {
                key: format!("key-{i}"),
                payload: json!({"params": {"amount": i + 1}, "priority": "LOW"}),
            });
        }
    }
    planned
}

async fn send(app: Arc<App>, p: Planned) -> Answer {
    let body = p.payload.to_string();
    for _ in 0..50 {
        let reply = app
            .call("POST", START, &[("idempotency-key", &p.key)], Some(&body))
            .await;
        match reply.status.as_u16() {
            200..=299 => {
                return Answer::Accepted {
                    request_id: reply.body["request_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    instance_id: reply.body["instance_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                };
            }
            422 => return Answer::Conflict,
            503 => tokio::time::sleep(Duration::from_millis(5)).await,
            other => panic!("unexpected status {other}: {}", reply.body),
        }
    }
    Answer::GaveUp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_requests_with_faults_and_key_reuse() {
    flowgate_tests::fixtures::init_tracing();
    let app = Arc::new(App::new());
    app.register("orders", true).await;
    // Before-call and after-call (ambiguous) failures at both ports; creation fails often
    // enough that a few requests exhaust their deliveries and end DEAD.
    app.faults
        .apply(
            "store.put=0.05:after,queue.send=0.05,store.update=0.02,store.get_workflow=0.02,\
             consumer.create=0.3,queue.ack=0.03:after,queue.receive=0.02,\
             queue.retry_later=0.05,queue.dead_letter=0.05",
        )
        .expect("plan");
    let _consumer = app.start_consumer();
    let _reconciler = app.start_reconciler(Duration::from_millis(600));

    let planned = plan();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in planned.iter().cloned().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let app = app.clone();
        tasks.spawn(async move {
            let answer = send(app, p.clone()).await;
            drop(permit);
            (i, p, answer)
        });
    }
    let mut answers = Vec::with_capacity(REQUESTS);
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("task"));
    }
    answers.sort_by_key(|(i, _, _)| *i);

    // Per key: every 2xx names the same request and instance, with one payload.
    let mut accepted: HashMap<String, (String, String, Value)> = HashMap::new();
    let mut conflicts = 0;
    let mut gave_up = 0;
    for (_, p, answer) in &answers {
        match answer {
            Answer::Accepted {
                request_id,
                instance_id,
            } => {
                let entry = accepted.entry(p.key.clone()).or_insert_with(|| {
                    (request_id.clone(), instance_id.clone(), p.payload.clone())
                });
                assert_eq!(
                    (&entry.0, &entry.1),
                    (request_id, instance_id),
                    "key {}",
                    p.key
                );
                assert_eq!(
                    entry.2, p.payload,
                    "a 2xx for key {} with another payload",
                    p.key
                );
            }
            Answer::Conflict => conflicts += 1,
            Answer::GaveUp => gave_up += 1,
        }
    }
    assert!(
        conflicts > 300,
        "the plan reuses ~500 keys with other payloads: {conflicts}"
    );
    assert_eq!(gave_up, 0, "503s always resolve on retry");

    // Drain, faults still on: every accepted request leaves ACCEPTED.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<String> = accepted.values().map(|(r, _, _)| r.clone()).collect();
    while !pending.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} requests never settled",
            pending.len()
        );
        let mut still = Vec::new();
        for request_id in pending {
            let record = app.store.get_request("default", &request_id).await;
            match record {
                Ok(Some(r)) if r.status != RequestStatus::Accepted => {}
                _ => still.push(request_id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    app.faults.clear();

    // Exactly one instance per accepted key, none for 422s, dead ones have a reason.
    let mut created = 0;
    let mut dead = 0;
    for (key, (request_id, instance_id, payload)) in &accepted {
        let record = app
            .store
            .get_request("default", request_id)
            .await
            .expect("read")
            .expect("no lost request");
        assert_eq!(&record.instance_id, instance_id);
        assert_eq!(record.idempotency_key.as_deref(), Some(key.as_str()));
        let instance = app
            .store
            .get_instance("default", instance_id)
            .await
            .expect("read");
        match record.status {
            RequestStatus::Created => {
                created += 1;
                let instance = instance.expect("CREATED has its instance");
                assert_eq!(
                    Value::Object(instance.params),
                    payload["params"],
                    "instance of the first payload"
                );
                assert!(record.history.iter().any(|h| h.kind.as_str() == "created"));
            }
            RequestStatus::Dead => {
                dead += 1;
                assert!(instance.is_none());
                assert!(
                    record.last_error.as_deref().is_some_and(|e| !e.is_empty()),
                    "DEAD with a reason"
                );
                assert!(
                    record
                        .history
                        .iter()
                        .any(|h| h.kind.as_str() == "dead_lettered")
                );
            }
            RequestStatus::Accepted => unreachable!("drained"),
        }
    }

    let mut listed = Vec::new();
    let mut after: Option<InstanceCursor> = None;
    loop {
        let page = app
            .store
            .list_instances("default", "orders", 100, after.as_ref())
            .await
            .expect("list");
        let full = page.len() == 100;
        after = page.last().map(InstanceCursor::after);
        listed.extend(page);
        if !full {
            break;
        }
    }
    let by_request: HashSet<&str> = listed.iter().map(|i| i.request_id.as_str()).collect();
    assert_eq!(by_request.len(), listed.len(), "one instance per request");
    assert_eq!(
        listed.len(),
        created,
        "no instance without a CREATED request"
    );
    println!(
        "pipeline: {} requests, {} distinct accepted keys, {created} created, {dead} dead, {conflicts} conflicts (422)",
        REQUESTS,
        accepted.len()
    );
}
