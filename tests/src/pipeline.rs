//! The pipeline check, shared by every backend: a keyed load where some keys are reused
//! (half with the same payload, half with another), 503s retried with the same key as a
//! client would; then a drain; then the exactly-once verdict.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use flowgate_core::model::{EventKind, InstanceCursor, RequestStatus};

use crate::http::App;

/// One planned request: its key and payload.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The `Idempotency-Key`.
    pub key: String,
    /// The body.
    pub payload: Value,
}

/// `n` requests; from the 100th on, 20% reuse an earlier key, half of those with the same
/// payload and half with another. Deterministic for a seed, so a failure can be replayed.
pub fn plan(n: usize, seed: u64) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut planned: Vec<Planned> = Vec::with_capacity(n);
    for i in 0..n {
        let roll = rng.u32(0..100);
        if i >= 100.min(n / 5) && i > 0 && roll < 20 {
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

/// What the load got back.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Per accepted key: request id, instance id, and the payload that was accepted.
    pub accepted: HashMap<String, (String, String, Value)>,
    /// 422 answers (same key, other payload).
    pub conflicts: usize,
}

/// Sends `planned` to `workflow` as `tenant` from `concurrency` clients. A 503 is retried
/// with the same key (up to 50 times); any other non-2xx but 422 fails the test.
pub async fn load(
    app: Arc<App>,
    tenant: &str,
    workflow: &str,
    planned: &[Planned],
    concurrency: usize,
) -> Loaded {
    let uri = format!("/v1/workflows/{workflow}/instances");
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for p in planned.iter().cloned() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let (app, uri, tenant) = (app.clone(), uri.clone(), tenant.to_owned());
        tasks.spawn(async move {
            let body = p.payload.to_string();
            let mut answer = None;
            for _ in 0..50 {
                let reply = app
                    .call_as(
                        Some(&tenant),
                        "POST",
                        &uri,
                        &[("idempotency-key", &p.key)],
                        Some(&body),
                    )
                    .await;
                match reply.status.as_u16() {
                    200..=299 => {
                        let id = |f: &str| reply.body[f].as_str().unwrap_or_default().to_owned();
                        answer = Some(Some((id("request_id"), id("instance_id"))));
                        break;
                    }
                    422 => {
                        answer = Some(None);
                        break;
                    }
                    503 => tokio::time::sleep(Duration::from_millis(5)).await,
                    other => panic!("unexpected status {other}: {}", reply.body),
                }
            }
            drop(permit);
            (
                p,
                answer.expect("a 503 always resolves when retried with the same key"),
            )
        });
    }
    let mut loaded = Loaded::default();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("client task") {
            (p, Some((request_id, instance_id))) => {
                let entry = loaded.accepted.entry(p.key.clone()).or_insert_with(|| {
                    (request_id.clone(), instance_id.clone(), p.payload.clone())
                });
                assert_eq!(
                    (&entry.0, &entry.1),
                    (&request_id, &instance_id),
                    "key {}",
                    p.key
                );
                assert_eq!(
                    entry.2, p.payload,
                    "a 2xx for key {} with another payload",
                    p.key
                );
            }
            (_, None) => loaded.conflicts += 1,
        }
    }
    loaded
}

/// Runs `step` until no accepted request is pending (`ACCEPTED`, or created with its
/// hand-off owed), or `within` runs out.
pub async fn drain<F, Fut>(app: &App, tenant: &str, loaded: &Loaded, within: Duration, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut pending: Vec<String> = loaded
        .accepted
        .values()
        .map(|(r, _, _)| r.clone())
        .collect();
    while !pending.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} requests never settled",
            pending.len()
        );
        step().await;
        let mut still = Vec::new();
        for request_id in pending {
            match app.raw_store.get_request(tenant, &request_id).await {
                Ok(Some(r)) if !r.is_pending() => {}
                _ => still.push(request_id),
            }
        }
        pending = still;
    }
}

/// The verdict: exactly one instance per accepted key, made of the accepted payload; none
/// for 422s; every request `CREATED` or `DEAD` with a reason. Answers (created, dead).
pub async fn verify(app: &App, tenant: &str, workflow: &str, loaded: &Loaded) -> (usize, usize) {
    let store = &app.raw_store;
    let (mut created, mut dead) = (0, 0);
    for (key, (request_id, instance_id, payload)) in &loaded.accepted {
        let record = store
            .get_request(tenant, request_id)
            .await
            .expect("read")
            .expect("no lost request");
        assert_eq!(&record.instance_id, instance_id);
        assert_eq!(record.idempotency_key.as_deref(), Some(key.as_str()));
        let instance = store.get_instance(tenant, instance_id).await.expect("read");
        match record.status {
            RequestStatus::Created | RequestStatus::Dispatched => {
                created += 1;
                let instance = instance.expect("CREATED has its instance");
                assert_eq!(
                    Value::Object(instance.params),
                    payload["params"],
                    "instance of the accepted payload"
                );
                assert!(record.history.iter().any(|h| h.kind == EventKind::Created));
            }
            RequestStatus::Dead => {
                dead += 1;
                // Only a request owed a hand-off can die after its instance was created
                // (its hand-off failed, or the queue gave up on its message).
                if instance.is_some() {
                    assert!(record.dispatch.is_some(), "{:?}", record.last_error);
                }
                assert!(
                    record.last_error.as_deref().is_some_and(|e| !e.is_empty()),
                    "DEAD with a reason"
                );
                assert!(
                    record
                        .history
                        .iter()
                        .any(|h| h.kind == EventKind::DeadLettered)
                );
            }
            RequestStatus::Accepted => panic!("request {request_id} was not drained"),
            RequestStatus::Archived => panic!("request {request_id} archived by nobody"),
            RequestStatus::Waiting | RequestStatus::Skipped => {
                panic!("request {request_id} held back, with no limit set")
            }
        }
    }
    let mut listed = Vec::new();
    let mut after: Option<InstanceCursor> = None;
    loop {
        let page = store
            .list_instances(tenant, workflow, 100, after.as_ref())
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
    let dead_handed = loaded
        .accepted
        .values()
        .filter(|(_, i, _)| listed.iter().any(|l| &l.instance_id == i))
        .count()
        - created;
    assert_eq!(
        listed.len(),
        created + dead_handed,
        "no instance without a CREATED request (or one whose hand-off died)"
    );
    (created, dead)
}
