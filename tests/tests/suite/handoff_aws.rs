//! The reconciler on DynamoDB and SQS finds every request that needs it, now that the
//! pending index holds only what the queue will not deliver on its own: a request whose send
//! failed, and an instance created but never handed off (its process died between the two).

use std::time::Duration;

use flowgate_core::model::{EventKind, RequestStatus};
use flowgate_core::usecases::Reconciler;
use flowgate_tests::http::App;
use flowgate_tests::receiver::Receiver;

use crate::handoff::{create_then_die, hooked};

async fn on_moto() -> App {
    let subject = flowgate_tests::aws::subject(Duration::from_secs(2), 4).await;
    App::over(subject.store, subject.queue, Box::new(()))
}

fn kinds(history: &[flowgate_core::model::HistoryEvent]) -> Vec<EventKind> {
    history.iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_request_whose_send_failed_is_found_and_sent_by_the_reconciler() {
    let app = on_moto().await;
    app.register_as(None, "orders", true).await;
    app.faults.apply("queue.send=1.0").expect("plan");
    let started = app
        .call_as(
            None,
            "POST",
            "/v1/workflows/orders/instances",
            &[],
            Some(r#"{"params":{"amount":1}}"#),
        )
        .await;
    assert_eq!(started.status.as_u16(), 202, "{}", started.body);
    let request_id = started.body["request_id"].as_str().expect("id").to_owned();
    app.faults.clear();
    let unsent = app
        .raw_store
        .get_request("default", &request_id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(
        kinds(&unsent.history),
        [EventKind::Accepted, EventKind::EnqueueFailed]
    );

    let grace = Duration::from_millis(300);
    let reconciler = Reconciler::new(app.store.clone(), app.queue.clone(), grace);
    tokio::time::sleep(grace * 2).await;
    let report = reconciler.sweep().await.expect("sweep");
    assert_eq!((report.overdue, report.reenqueued), (1, 1), "{report:?}");

    let _consumer = app.start_consumer();
    let done = app
        .until_status("default", &request_id, RequestStatus::Created)
        .await;
    assert_eq!(
        kinds(&done.history),
        [
            EventKind::Accepted,
            EventKind::EnqueueFailed,
            EventKind::Reenqueued,
            EventKind::Created
        ],
        "the re-send is the send: no second `enqueued`"
    );
    let report = reconciler.sweep().await.expect("sweep");
    assert_eq!(report.overdue, 0, "nothing owed any more: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn an_instance_created_but_never_handed_off_is_found_by_the_reconciler() {
    let rx = Receiver::start("handoff-secret").await;
    let app = on_moto().await;
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
    let request_id = create_then_die(&app).await;
    let stuck = app
        .raw_store
        .get_request("default", &request_id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(stuck.status, RequestStatus::Created);
    assert!(stuck.is_pending(), "a hand-off is owed");

    let grace = Duration::from_millis(300);
    let reconciler = Reconciler::new(app.store.clone(), app.queue.clone(), grace);
    tokio::time::sleep(grace * 2).await;
    let report = reconciler.sweep().await.expect("sweep");
    assert_eq!((report.overdue, report.reenqueued), (1, 1), "{report:?}");

    let _consumer = app.start_consumer();
    let done = app
        .until_status("default", &request_id, RequestStatus::Dispatched)
        .await;
    assert_eq!(rx.per_instance().get(&done.instance_id), Some(&1));
    assert_eq!(
        done.history
            .iter()
            .filter(|e| e.kind == EventKind::Created)
            .count(),
        1
    );
    let report = reconciler.sweep().await.expect("sweep");
    assert_eq!(report.overdue, 0, "nothing owed any more: {report:?}");
}
