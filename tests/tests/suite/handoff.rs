//! The dispatch stage's recovery paths on the embedded backend: the reconciler re-sends an
//! instance created but never handed off (its process died between the two), and a
//! workflow whose target was removed meanwhile dead-letters the hand-off with its reason.

use std::time::Duration;

use serde_json::json;

use flowgate_core::message::QueueMessage;
use flowgate_core::model::{EventKind, HistoryEvent, RequestStatus};
use flowgate_core::ports::RequestUpdate;
use flowgate_core::usecases::Reconciler;
use flowgate_tests::http::App;
use flowgate_tests::receiver::Receiver;

async fn hooked(app: &App, url: &str) {
    let body = json!({"name": "hooked", "params_schema": {"type": "object"},
        "target": {"type": "webhook", "url": url, "secret": "handoff-secret"}});
    let put = app.put_workflow_as(None, "hooked", &body).await;
    assert_eq!(put.status.as_u16(), 201, "{}", put.body);
}

/// A receiver, an app whose workflow `hooked` hands off to it, and one start of it (its
/// request id).
async fn started_on_a_webhook() -> (Receiver, App, String) {
    let rx = Receiver::start("handoff-secret").await;
    let app = App::new();
    hooked(&app, &rx.url).await;
    let started = app
        .call_as(
            None,
            "POST",
            "/v1/workflows/hooked/instances",
            &[],
            Some("{}"),
        )
        .await;
    assert_eq!(started.status.as_u16(), 202, "{}", started.body);
    let request_id = started.body["request_id"].as_str().expect("id").to_owned();
    (rx, app, request_id)
}

/// Creates the instance of the next message as a consumer would, then loses the message
/// (the process died before the hand-off): answers the request id.
async fn create_then_die(app: &App) -> String {
    let delivery = app
        .raw_queue
        .receive(1, Duration::from_secs(1))
        .await
        .expect("receive")
        .pop()
        .expect("a message");
    let message = QueueMessage::parse(&delivery.body).expect("a request message");
    assert_eq!(message.dispatch_to.as_deref(), Some("webhook"));
    let update = RequestUpdate {
        set_status: Some(RequestStatus::Created),
        touch_pending: true,
        ..RequestUpdate::event(HistoryEvent::now(
            EventKind::Created,
            "created, then the process died",
        ))
    };
    let instance = message.instance(update.event.at);
    app.raw_store
        .create_instance(&instance, &update)
        .await
        .expect("create");
    app.raw_queue.ack(&delivery).await.expect("ack");
    message.request_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_hands_off_an_instance_created_but_never_dispatched() {
    let (rx, app, _) = started_on_a_webhook().await;
    let request_id = create_then_die(&app).await;
    let stuck = app
        .flowgate
        .get_request("default", &request_id)
        .await
        .expect("read");
    assert_eq!(stuck.status, RequestStatus::Created);
    assert!(stuck.is_pending(), "a hand-off is owed");

    let grace = Duration::from_millis(100);
    let reconciler = Reconciler::new(app.store.clone(), app.queue.clone(), grace);
    assert_eq!(
        reconciler.sweep().await.expect("sweep").overdue,
        0,
        "within its grace"
    );
    tokio::time::sleep(grace * 2).await;
    let report = reconciler.sweep().await.expect("sweep");
    assert_eq!((report.overdue, report.reenqueued), (1, 1), "{report:?}");

    let _consumer = app.start_consumer();
    let done = app
        .until_status("default", &request_id, RequestStatus::Dispatched)
        .await;
    assert!(
        done.history
            .iter()
            .any(|e| e.kind == EventKind::Reenqueued && e.detail.contains("hand-off owed"))
    );
    assert_eq!(
        done.history
            .iter()
            .filter(|e| e.kind == EventKind::Created)
            .count(),
        1
    );
    assert_eq!(rx.per_instance().get(&done.instance_id), Some(&1));
    assert!(!done.is_pending());
    let report = reconciler.sweep().await.expect("sweep");
    assert_eq!(report.overdue, 0, "nothing owed any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_whose_target_was_removed_is_dead_lettered_with_its_reason() {
    let (rx, app, request_id) = started_on_a_webhook().await;
    // The target is removed before the consumer runs.
    let put = app
        .put_workflow_as(
            None,
            "hooked",
            &json!({"name": "hooked", "params_schema": {"type": "object"}}),
        )
        .await;
    assert_eq!(put.status.as_u16(), 200);
    let _consumer = app.start_consumer();
    let dead = app
        .until_status("default", &request_id, RequestStatus::Dead)
        .await;
    let reason = dead.last_error.unwrap_or_default();
    assert!(
        reason.starts_with("dispatch failed") && reason.contains("no target"),
        "{reason}"
    );
    assert!(rx.delivered().is_empty());
    let letters = app
        .call_as(None, "GET", "/v1/dlq?error=dispatch", &[], None)
        .await;
    assert_eq!(
        letters.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        letters.body
    );
}
