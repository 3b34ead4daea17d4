//! The consumer and the reconciler over the embedded backend: poison messages, retries,
//! dead-lettering, redelivery, reconciliation, and the structured log line of every stage.

use std::time::Duration;

use chrono::Utc;

use flowgate_core::message::QueueMessage;
use flowgate_core::model::{EventKind, RequestStatus};
use flowgate_core::ports::{Delivery, Envelope, Liveness, Queue};
use flowgate_core::usecases::{Disposition, Reconciler};
use flowgate_tests::fixtures::{Rig, capture_json_logs, count_events, record, tenant};

const MAX: u32 = 5;

fn rig() -> Rig {
    Rig::new(Duration::from_millis(200), MAX)
}

async fn next(queue: &dyn Queue) -> Delivery {
    for _ in 0..50 {
        if let Some(d) = queue
            .receive(1, Duration::from_millis(100))
            .await
            .unwrap()
            .pop()
        {
            return d;
        }
    }
    panic!("no delivery within 5 s");
}

/// Handles the next delivery.
async fn handle_next(rig: &Rig) -> Disposition {
    rig.consumer.handle(next(rig.queue.as_ref()).await).await
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_with_its_reason() {
    let rig = rig();
    let t = tenant();
    let r = rig.accepted(&t).await;
    rig.queue
        .send(&Envelope {
            tenant: t.clone(),
            request_id: r.request_id.clone(),
            body: "{oops".into(),
            traceparent: None,
        })
        .await
        .unwrap();
    let disposition = handle_next(&rig).await;
    let Disposition::DeadLetter { reason } = disposition else {
        panic!("{disposition:?}")
    };
    assert!(reason.contains("poison message"), "{reason}");
    let read = rig.read(&t, &r.request_id).await;
    assert_eq!(read.status, RequestStatus::Dead);
    assert!(read.last_error.unwrap().contains("unparseable"));
    assert!(matches!(
        rig.queue.liveness(&t, &r.request_id).await.unwrap(),
        Liveness::DeadLettered(_)
    ));

    // Without attributes there is no request to mark, but the message is still kept.
    rig.queue
        .send(&Envelope {
            tenant: String::new(),
            request_id: String::new(),
            body: "[]".into(),
            traceparent: None,
        })
        .await
        .unwrap();
    let mut d = next(rig.queue.as_ref()).await;
    d.tenant = None;
    d.request_id = None;
    assert!(matches!(
        rig.consumer.handle(d).await,
        Disposition::DeadLetter { .. }
    ));

    let mut future = QueueMessage::for_record(&r);
    future.v = 99;
    rig.queue.send(&future.envelope(None)).await.unwrap();
    let Disposition::DeadLetter { reason } = handle_next(&rig).await else {
        panic!("unknown versions are dead-lettered")
    };
    assert!(reason.contains("unsupported message version 99"));
}

#[tokio::test]
async fn retryable_failures_retry_then_dead_letter_on_the_last_delivery() {
    let rig = rig();
    let t = tenant();
    rig.faults.apply("consumer.create=1.0").unwrap();
    let r = rig.sent(&t).await;
    for n in 1..MAX {
        let d = next(rig.queue.as_ref()).await;
        assert_eq!(d.receive_count, n);
        assert!(matches!(
            rig.consumer.handle(d).await,
            Disposition::Retry { .. }
        ));
        let read = rig.read(&t, &r.request_id).await;
        assert_eq!((read.status, read.attempts), (RequestStatus::Accepted, n));
        assert!(
            read.last_error
                .unwrap()
                .contains("injected fault at consumer.create")
        );
    }
    let last = next(rig.queue.as_ref()).await;
    assert_eq!(last.receive_count, MAX);
    let Disposition::DeadLetter { reason } = rig.consumer.handle(last).await else {
        panic!()
    };
    assert!(reason.starts_with("gave up after 5 deliveries"), "{reason}");
    let read = rig.read(&t, &r.request_id).await;
    assert_eq!(read.status, RequestStatus::Dead);
    assert_eq!(count_events(&read.history, EventKind::DeliveryFailed), 4);
    assert_eq!(
        read.history.last().map(|h| h.kind),
        Some(EventKind::DeadLettered)
    );
    assert!(matches!(
        rig.queue.liveness(&t, &r.request_id).await.unwrap(),
        Liveness::DeadLettered(_)
    ));
    assert!(
        rig.store
            .get_instance(&t, &r.instance_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_at_once() {
    let rig = rig();
    let t = tenant();
    rig.faults.apply("consumer.create=1.0:permanent").unwrap();
    let r = rig.sent(&t).await;
    let Disposition::DeadLetter { reason } = handle_next(&rig).await else {
        panic!()
    };
    assert!(reason.starts_with("permanent failure"), "{reason}");
    let read = rig.read(&t, &r.request_id).await;
    assert_eq!((read.status, read.attempts), (RequestStatus::Dead, 1));
}

#[tokio::test]
async fn redelivery_and_duplicates_create_one_instance() {
    let rig = rig();
    let t = tenant();
    let r = rig.accepted(&t).await;
    let envelope = QueueMessage::envelope_for(&r);
    rig.queue.send(&envelope).await.unwrap();
    rig.queue.send(&envelope).await.unwrap();
    assert_eq!(handle_next(&rig).await, Disposition::Ack);
    assert_eq!(handle_next(&rig).await, Disposition::Ack);
    let read = rig.read(&t, &r.request_id).await;
    assert_eq!(read.status, RequestStatus::Created);
    assert_eq!(count_events(&read.history, EventKind::Created), 1);
    assert_eq!(
        rig.store
            .list_instances(&t, "wf", 10, None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        rig.queue.liveness(&t, &r.request_id).await.unwrap(),
        Liveness::Absent
    );
}

#[tokio::test]
async fn a_message_for_a_request_without_record_is_dead_lettered() {
    let rig = rig();
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    rig.queue
        .send(&QueueMessage::envelope_for(&r))
        .await
        .unwrap();
    let Disposition::DeadLetter { reason } = handle_next(&rig).await else {
        panic!()
    };
    assert!(reason.contains("has no record"), "{reason}");
}

#[tokio::test]
async fn the_reconciler_resends_a_request_whose_message_was_lost() {
    let rig = rig();
    let t = tenant();
    // A crash between recording and enqueueing: a record, no message.
    let r = rig.accepted(&t).await;
    let reconciler = Reconciler::new(
        rig.store.clone(),
        rig.queue.clone(),
        Duration::from_millis(50),
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    let report = reconciler.sweep().await.unwrap();
    assert_eq!((report.overdue, report.reenqueued), (1, 1), "{report:?}");
    let read = rig.read(&t, &r.request_id).await;
    assert!(read.history.iter().any(|h| h.kind == EventKind::Reenqueued));
    assert_eq!(
        rig.queue.liveness(&t, &r.request_id).await.unwrap(),
        Liveness::Live
    );

    // Overdue again while its message waits: left alone, not sent twice.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let report = reconciler.sweep().await.unwrap();
    assert_eq!(report.reenqueued, 0, "{report:?}");
    assert_eq!((report.overdue, report.live, report.reenqueued), (1, 1, 0));

    assert_eq!(handle_next(&rig).await, Disposition::Ack);
    let read = rig.read(&t, &r.request_id).await;
    assert_eq!(read.status, RequestStatus::Created);
}

#[tokio::test]
async fn the_reconciler_marks_dead_a_request_whose_message_was_dead_lettered_unseen() {
    let rig = rig();
    let t = tenant();
    let r = rig.sent(&t).await;
    // A consumer that crashed on every delivery: the queue moves the message by itself.
    for _ in 0..MAX {
        let d = next(rig.queue.as_ref()).await;
        rig.queue.retry_later(&d, Duration::ZERO).await.unwrap();
    }
    assert!(
        rig.queue
            .receive(1, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    let reconciler = Reconciler::new(rig.store.clone(), rig.queue.clone(), Duration::ZERO);
    let report = reconciler.sweep().await.unwrap();
    assert_eq!((report.overdue, report.dead), (1, 1), "{report:?}");
    let read = rig.read(&t, &r.request_id).await;
    assert_eq!(read.status, RequestStatus::Dead);
    assert!(read.last_error.unwrap().contains("without being handled"));
}

#[tokio::test]
async fn the_reconciler_removes_finished_requests_past_retention() {
    let rig = rig();
    let t = tenant();
    let long_ago = Utc::now() - chrono::Duration::days(8);
    let mut old = record(&t, "wf", long_ago);
    old.status = RequestStatus::Created;
    let recent = rig.accepted(&t).await;
    rig.store.create_request(&old, None).await.unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let without = Reconciler::new(rig.store.clone(), rig.queue.clone(), week);
    assert_eq!(
        without.sweep().await.unwrap().expired,
        0,
        "no retention set"
    );
    let reconciler =
        Reconciler::new(rig.store.clone(), rig.queue.clone(), week).with_retention(week);
    let report = reconciler.sweep().await.unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert!(
        rig.store
            .get_request(&t, &old.request_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        rig.store
            .get_request(&t, &recent.request_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(reconciler.sweep().await.unwrap().expired, 0);
}

#[tokio::test]
async fn every_stage_logs_request_instance_tenant_and_workflow() {
    let (captured, _guard) = capture_json_logs(tracing::Level::TRACE);

    let app = flowgate_tests::http::App::new();
    app.register("orders", true).await;
    let _consumer = app.start_consumer();
    let reply = app
        .call(
            "POST",
            "/v1/workflows/orders/instances",
            &[("prefer", "wait=5")],
            Some(r#"{"params":{"amount":3}}"#),
        )
        .await;
    assert_eq!(reply.status, 201);
    let request_id = reply.body["request_id"].as_str().unwrap();
    let instance_id = reply.body["instance_id"].as_str().unwrap();

    // The API may see the instance a moment before the consumer task logs its line.
    let log = || captured.text();
    for _ in 0..100 {
        if log().contains("\"stage\":\"created\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = log();
    let mut stages = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(stage) = entry["fields"]["stage"].as_str() else {
            continue;
        };
        if entry["span"]["request_id"].as_str() != Some(request_id) {
            continue;
        }
        assert_eq!(
            entry["span"]["instance_id"].as_str(),
            Some(instance_id),
            "{line}"
        );
        assert_eq!(entry["span"]["tenant"], "default", "{line}");
        assert_eq!(entry["span"]["workflow"], "orders", "{line}");
        stages.push(stage.to_owned());
    }
    assert_eq!(stages, ["accepted", "enqueued", "created"], "{text}");
}

#[tokio::test]
async fn failure_lines_carry_the_request_ids_even_when_only_warnings_are_logged() {
    let (captured, _guard) = capture_json_logs(tracing::Level::WARN);

    let rig = rig();
    let t = tenant();
    rig.faults.apply("consumer.create=1.0").unwrap();
    let r = rig.sent(&t).await;
    assert!(matches!(handle_next(&rig).await, Disposition::Retry { .. }));

    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("delivery_failed"))
        .unwrap_or_else(|| panic!("no delivery_failed line in {text}"));
    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["span"]["request_id"], r.request_id.as_str(), "{line}");
    assert_eq!(
        entry["span"]["instance_id"],
        r.instance_id.as_str(),
        "{line}"
    );
    assert_eq!(entry["span"]["tenant"], t.as_str(), "{line}");
    assert_eq!(entry["span"]["workflow"], "wf", "{line}");
}
