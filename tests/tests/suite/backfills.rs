//! Backfills on the embedded host: date expansion, exactly one instance per (workflow,
//! date) whatever else started it, skipping dates that have one, reprocess, and control.

use std::time::Duration;

use serde_json::{Value, json};

use flowgate_core::usecases::{BackfillRunner, Scheduler};
use flowgate_tests::http::App;

const B: &str = "/v1/workflows/orders/backfills";

async fn app() -> App {
    let app = App::new();
    app.register("orders", true).await;
    app
}

#[tokio::test]
async fn a_dry_run_lists_the_dates_of_a_range_and_changes_nothing() {
    let app = app().await;
    let body = json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z",
        "cron": "0 0 0 * * ? *", "dry_run": true, "order": "desc"});
    let reply = app.call("POST", B, &[], Some(&body.to_string())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["dates"], 3, "inclusive at both ends");
    assert_eq!(
        reply.body["logical_dates"],
        json!([
            "2026-01-03T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-01T00:00:00Z"
        ])
    );
    assert_eq!(reply.body["backfill_id"], Value::Null);
    // By the workflow's schedules that are not paused: their union, de-duplicated; a
    // schedule's own start and end do not limit it.
    for (id, cron, paused, start) in [
        ("a", "0 0 0 * * ? *", false, "2030-01-01T00:00:00Z"),
        ("b", "0 0 0,12 * * ? *", false, "2030-01-01T00:00:00Z"),
        ("c", "0 0 6 * * ? *", true, "2030-01-01T00:00:00Z"),
    ] {
        let s = json!({"cron": cron, "params": {"amount": 1}, "paused": paused,
            "start": start});
        let put = app
            .call(
                "PUT",
                &format!("/v1/workflows/orders/schedules/{id}"),
                &[],
                Some(&s.to_string()),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.body);
    }
    let body =
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "dry_run": true});
    let reply = app.call("POST", B, &[], Some(&body.to_string())).await;
    assert_eq!(reply.body["dates"], 3, "{}", reply.body);
    assert_eq!(
        reply.body["logical_dates"],
        json!([
            "2026-01-01T00:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-02T00:00:00Z"
        ]),
        "the paused schedule's 06:00 is not among them"
    );
}

#[tokio::test]
async fn bad_backfills_are_refused() {
    let app = app().await;
    for body in [
        json!({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z", "cron": "0 0 * * *"}),
        json!({"from": "2026-01-01T00:00:00Z"}),
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
        json!({"dates": []}),
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-12-31T00:00:00Z", "cron": "* * * * * *"}),
        json!({"dates": ["2026-01-01T00:00:00Z"], "max_in_flight": 0, "params": {"amount": 1}}),
        json!({"dates": ["2026-01-01T00:00:00Z"], "paralel": 3}),
    ] {
        app.call("POST", B, &[], Some(&body.to_string()))
            .await
            .assert_problem(400, "invalid-request");
    }
    let over = json!({"from": "2026-01-01T00:00:00Z", "to": "2026-12-31T00:00:00Z",
        "cron": "* * * * * *", "dry_run": true});
    let reply = app.call("POST", B, &[], Some(&over.to_string())).await;
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("100000"),
        "{}",
        reply.body
    );
    app.call("GET", "/v1/backfills/nope", &[], None)
        .await
        .assert_problem(404, "backfill-not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_creates_one_instance_per_date_and_skips_dates_that_have_one() {
    let app = app().await;
    let _consumer = app.start_consumer();
    // A schedule already fired two of the dates.
    let fired = ["2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z"];
    for date in fired {
        use flowgate_core::usecases::{Origin, StartRequest};
        use flowgate_core::validation::StartBody;
        let at = chrono::DateTime::parse_from_rfc3339(date)
            .expect("date")
            .to_utc();
        let request = StartRequest::fired(
            "default",
            "orders",
            StartBody {
                params: Some(json!({"amount": 9})),
                priority: None,
                schedule_time: None,
            },
            Origin {
                logical_date: at,
                schedule_id: Some("daily".into()),
                backfill_id: None,
                reprocess: false,
                detail: "fired".into(),
            },
        );
        app.flowgate.start_instance(request).await.expect("fire");
    }
    let body = json!({"from": "2026-02-01T00:00:00Z", "to": "2026-02-10T00:00:00Z",
        "cron": "0 0 0 * * ? *", "max_in_flight": 3, "params": {"amount": 1}});
    let reply = app.call("POST", B, &[], Some(&body.to_string())).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body["dates"].as_u64()),
        (202, Some(10)),
        "{}",
        reply.body
    );
    let id = reply.body["backfill_id"].as_str().expect("id").to_owned();
    let done = app.run_backfill(&id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (
            done["total"].as_u64(),
            done["started"].as_u64(),
            done["created"].as_u64(),
            done["skipped"].as_u64(),
            done["dead"].as_u64()
        ),
        (Some(10), Some(10), Some(8), Some(2), Some(0)),
        "{done}"
    );

    // Running it again starts nothing: every date has its instance.
    let again = app.call("POST", B, &[], Some(&body.to_string())).await;
    let second = app
        .run_backfill(again.body["backfill_id"].as_str().expect("id"))
        .await;
    assert_eq!(
        (second["created"].as_u64(), second["skipped"].as_u64()),
        (Some(0), Some(10)),
        "{second}"
    );

    // Reprocess: keyed by (backfill, date), each date gets another instance.
    let mut reprocess = body.clone();
    reprocess["reprocess"] = json!(true);
    let third = app.call("POST", B, &[], Some(&reprocess.to_string())).await;
    let third = app
        .run_backfill(third.body["backfill_id"].as_str().expect("id"))
        .await;
    assert_eq!(third["created"].as_u64(), Some(10), "{third}");
    let listed = app
        .call("GET", "/v1/workflows/orders/instances?limit=100", &[], None)
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(20));
    let _ = Scheduler::new(app.flowgate.clone());
}

#[tokio::test]
async fn a_backfill_pauses_resumes_and_cancels() {
    let app = app().await;
    let body =
        json!({"dates": ["2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"], "params": {"amount": 1}});
    let id = app.call("POST", B, &[], Some(&body.to_string())).await.body["backfill_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let at = |action: &str| format!("/v1/backfills/{id}/{action}");
    let paused = app.call("POST", &at("pause"), &[], None).await;
    assert_eq!(paused.body["state"], "paused");
    BackfillRunner::new(app.flowgate.clone())
        .step(Duration::from_millis(50))
        .await
        .expect("step");
    let view = app
        .call("GET", &format!("/v1/backfills/{id}"), &[], None)
        .await;
    assert_eq!(view.body["started"], 0, "a paused backfill starts nothing");
    assert_eq!(
        app.call("POST", &at("resume"), &[], None).await.body["state"],
        "running"
    );
    assert_eq!(
        app.call("POST", &at("cancel"), &[], None).await.body["state"],
        "cancelled"
    );
    app.call("POST", &at("resume"), &[], None)
        .await
        .assert_problem(409, "conflict");
    app.call("POST", &at("rewind"), &[], None)
        .await
        .assert_problem(404, "route-not-found");
}
