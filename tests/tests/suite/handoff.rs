//! The dispatch stage's recovery paths on the embedded backend: the reconciler re-sends an
//! instance created but never handed off (its process died between the two), and a
//! workflow whose target was removed meanwhile dead-letters the hand-off with its reason.

use std::time::Duration;

use serde_json::json;

use flowgate_core::message::QueueMessage;
use flowgate_core::model::{EventKind, HistoryEvent, RequestStatus};
use flowgate_core::ports::RequestUpdate;
use flowgate_core::trace::TraceContext;
use flowgate_core::usecases::Reconciler;
use flowgate_tests::http::App;
use flowgate_tests::receiver::Receiver;

pub(crate) async fn hooked(app: &App, url: &str) {
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
pub(crate) async fn create_then_die(app: &App) -> String {
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

/// One trace from the caller to the target: the caller's `traceparent` is continued by the
/// API, stamped on every stage of the request's history, carried by the message, and sent on
/// to the webhook as a child span of the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_caller_through_the_queue_to_the_webhook() {
    let rx = Receiver::start("handoff-secret").await;
    let app = App::new();
    hooked(&app, &rx.url).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let started = app
        .call_as(
            None,
            "POST",
            "/v1/workflows/hooked/instances",
            &[("traceparent", parent.as_str())],
            Some("{}"),
        )
        .await;
    assert_eq!(started.status.as_u16(), 202, "{}", started.body);
    let request_id = started.body["request_id"].as_str().expect("id").to_owned();
    let _consumer = app.start_consumer();
    let record = dispatched(&app, &request_id).await;
    let history = record["history"].as_array().expect("a history");
    assert_eq!(
        history[0]["trace_id"], trace_id,
        "the history names the trace: {record}"
    );
    let stages: Vec<&str> = history.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        stages,
        ["accepted", "enqueued", "created", "dispatched"],
        "{record}"
    );
    let delivered = rx.delivered();
    let sent = delivered[0]
        .traceparent
        .as_deref()
        .expect("a traceparent header");
    let context = TraceContext::parse(sent).expect("a valid traceparent");
    assert_eq!(context.trace_id(), trace_id);
    assert_ne!(
        sent, parent,
        "the target's parent is Flowgate's span, not the caller's"
    );

    // Without one, a request starts its own trace, which its history names.
    let fresh = app
        .call_as(
            None,
            "POST",
            "/v1/workflows/hooked/instances",
            &[("traceparent", "junk")],
            Some("{}"),
        )
        .await;
    let fresh_id = fresh.body["request_id"].as_str().expect("id").to_owned();
    let fresh = dispatched(&app, &fresh_id).await;
    let first = fresh["history"][0]["trace_id"]
        .as_str()
        .expect("a trace id");
    assert!(TraceContext::parse(&format!("00-{first}-00f067aa0ba902b7-01")).is_some());
    assert_ne!(first, trace_id);
}

/// The request once its instance is handed off.
async fn dispatched(app: &App, request_id: &str) -> serde_json::Value {
    for _ in 0..200 {
        let got = app
            .call_as(
                None,
                "GET",
                &format!("/v1/requests/{request_id}"),
                &[],
                None,
            )
            .await;
        if got.body["status"] == "DISPATCHED" {
            return got.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("request {request_id} was not dispatched in 10 s");
}

/// A wait on a workflow whose hand-off is refused names the instance, whichever the wait
/// saw first: `CREATED`, or the dead-lettered hand-off (then with the hand-off and its
/// reason). Before, the second case answered 202 as if no instance existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_refused_hand_off_names_the_instance() {
    let rx = Receiver::start("handoff-secret").await;
    rx.always(flowgate_tests::receiver::Answer::Status(400));
    let app = App::new();
    hooked(&app, &rx.url).await;
    let _consumer = app.start_consumer();
    let mut dead_seen = 0;
    for n in 0..20 {
        let key = format!("refused-{n}");
        let reply = app
            .call_as(
                None,
                "POST",
                "/v1/workflows/hooked/instances",
                &[("idempotency-key", key.as_str()), ("prefer", "wait=5")],
                Some("{}"),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
        let instance_id = reply.body["instance_id"].as_str().expect("id").to_owned();
        let shown = app.flowgate.get_instance("default", &instance_id).await;
        assert!(shown.is_ok(), "the answer names an instance that exists");
        if reply.body["status"] == "DEAD" {
            dead_seen += 1;
            assert_eq!(
                reply.body["dispatch"]["target"], "webhook",
                "{}",
                reply.body
            );
            assert!(
                reply.body["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("400")),
                "{}",
                reply.body
            );
        }
        // Once dead-lettered, a replay of the key says the instance exists too: 200.
        let settled = app
            .until_status(
                "default",
                reply.body["request_id"].as_str().expect("id"),
                RequestStatus::Dead,
            )
            .await;
        assert_eq!(settled.status, RequestStatus::Dead);
        let replay = app
            .call_as(
                None,
                "POST",
                "/v1/workflows/hooked/instances",
                &[("idempotency-key", key.as_str())],
                Some("{}"),
            )
            .await;
        assert_eq!(replay.status.as_u16(), 200, "{}", replay.body);
        assert_eq!(replay.body["instance_id"], instance_id.as_str());
    }
    eprintln!("{dead_seen} of 20 waits saw the dead-lettered hand-off first");
}
