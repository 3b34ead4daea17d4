//! The hand-off half of the contract, run by [`crate::conformance_tests!`] on every backend:
//! a webhook target reached once per instance through retries, a timeout, a permanent
//! refusal that dead-letters with kind `dispatch`, and a replay that re-drives only the
//! hand-off; a record-only workflow is never handed off.

use std::time::Duration;

use serde_json::{Value, json};

use flowgate_core::model::{EventKind, RequestRecord, RequestStatus};

use crate::conformance::Subject;
use crate::fixtures::tenant;
use crate::http::App;
use crate::receiver::{Answer, Receiver};

const SECRET: &str = "conformance-secret";

/// Starts one instance of `workflow`; answers its (request_id, instance_id).
async fn start(app: &App, t: &str, workflow: &str) -> (String, String) {
    let reply = app
        .call_as(
            Some(t),
            "POST",
            &format!("/v1/workflows/{workflow}/instances"),
            &[],
            Some(r#"{"params": {}}"#),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 202, "{}", reply.body);
    let id = |k: &str| reply.body[k].as_str().expect("id").to_owned();
    (id("request_id"), id("instance_id"))
}

fn count(record: &RequestRecord, kind: EventKind) -> usize {
    record.history.iter().filter(|e| e.kind == kind).count()
}

async fn put(app: &App, t: &str, code: &str, target: Option<Value>) {
    let mut body = json!({"name": code, "params_schema": {"type": "object"}});
    if let Some(target) = target {
        body["target"] = target;
    }
    let reply = app
        .call_as(
            Some(t),
            "PUT",
            &format!("/v1/workflows/{code}"),
            &[],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
    assert!(
        reply.body["target"].get("secret").is_none(),
        "{}",
        reply.body
    );
}

/// The whole hand-off contract on one backend.
pub async fn hand_off_reaches_the_target_once(s: Subject) {
    let app = App::over(s.store.clone(), s.queue.clone(), Box::new(()));
    let rx = Receiver::start(SECRET).await;
    let t = tenant();
    put(&app, &t, "plain", None).await;
    let webhook = json!({"type": "webhook", "url": rx.url, "timeout": "200ms", "secret": SECRET});
    put(&app, &t, "hooked", Some(webhook)).await;
    let shown = app
        .call_as(Some(&t), "GET", "/v1/workflows/hooked", &[], None)
        .await;
    assert_eq!(shown.body["target"]["secret_set"], true, "{}", shown.body);
    assert!(
        !shown.body.to_string().contains(SECRET),
        "the secret is never shown"
    );
    let _consumer = app.start_consumer();

    // Two retryable failures, then a success: three deliveries of one instance.
    rx.first(2, Answer::Status(503));
    let (plain, _) = start(&app, &t, "plain").await;
    let (a, a_instance) = start(&app, &t, "hooked").await;
    let done = app.until_status(&t, &a, RequestStatus::Dispatched).await;
    assert_eq!(
        count(&done, EventKind::DispatchFailed),
        2,
        "{:?}",
        done.history
    );
    assert_eq!(count(&done, EventKind::Dispatched), 1);
    let dispatch = done.dispatch.as_ref().expect("hand-off state");
    assert_eq!(dispatch.reference.as_deref(), Some("HTTP 200"));
    assert_eq!(dispatch.attempts, 3);
    let view = app
        .call_as(
            Some(&t),
            "GET",
            &format!("/v1/instances/{a_instance}"),
            &[],
            None,
        )
        .await;
    assert_eq!(view.body["status"], "DISPATCHED", "{}", view.body);
    assert_eq!(view.body["dispatch"]["reference"], "HTTP 200");
    let to_a: Vec<_> = rx
        .delivered()
        .into_iter()
        .filter(|d| d.instance_id == a_instance)
        .collect();
    assert_eq!(to_a.len(), 3);
    assert!(to_a.iter().all(|d| d.signed
        && d.idempotency_key.as_deref() == Some(a_instance.as_str())
        && d.body["request_id"] == a.as_str()));

    // A record-only workflow is created and never handed off.
    let plain = app.until_status(&t, &plain, RequestStatus::Created).await;
    assert!(plain.dispatch.is_none() && plain.pending_since.is_none());
    assert!(!rx.per_instance().contains_key(&plain.instance_id));

    // Slower than the timeout: a retry.
    // (The timeout is shorter than the subject's visibility timeout, as it must be.)
    rx.first(1, Answer::Slow(Duration::from_secs(1)));
    let (b, _) = start(&app, &t, "hooked").await;
    let done = app.until_status(&t, &b, RequestStatus::Dispatched).await;
    assert!(
        done.history
            .iter()
            .any(|e| e.kind == EventKind::DispatchFailed && e.detail.contains("timeout")),
        "{:?} {:?}",
        done.history,
        rx.delivered()
    );

    // A 400 is permanent: dead-lettered with kind `dispatch`, the instance kept.
    rx.always(Answer::Status(400));
    let (c, c_instance) = start(&app, &t, "hooked").await;
    let dead = app.until_status(&t, &c, RequestStatus::Dead).await;
    assert_eq!(
        count(&dead, EventKind::DispatchFailed),
        1,
        "{:?}",
        dead.history
    );
    assert!(
        dead.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("dispatch failed"))
    );
    let letters = app
        .call_as(Some(&t), "GET", "/v1/dlq?error=dispatch", &[], None)
        .await;
    assert_eq!(
        letters.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        letters.body
    );

    // Fixed, then replayed: the hand-off only, never a second instance.
    rx.always(Answer::Ok);
    let replay = app
        .call_as(Some(&t), "POST", "/v1/dlq/replay", &[], Some("{}"))
        .await;
    assert_eq!(replay.status.as_u16(), 200, "{}", replay.body);
    let done = app.until_status(&t, &c, RequestStatus::Dispatched).await;
    assert_eq!(count(&done, EventKind::Created), 1, "{:?}", done.history);
    let listed = app
        .call_as(Some(&t), "GET", "/v1/workflows/hooked/instances", &[], None)
        .await;
    let items = listed.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{}", listed.body);
    assert!(
        items.iter().all(|i| i["status"] == "DISPATCHED"),
        "{}",
        listed.body
    );
    assert!(rx.accepted().contains(&c_instance));
    assert_eq!(rx.accepted().len(), 3);
}
