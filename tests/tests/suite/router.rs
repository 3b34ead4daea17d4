//! Router tests through `oneshot`: every status code of the API contract.

use serde_json::{Value, json};

use flowgate_core::ErrorKind;
use flowgate_core::faults::Fault;
use flowgate_tests::http::App;

const START: &str = "/v1/workflows/orders/instances";

fn fail_always() -> Fault {
    Fault {
        rate: 1.0,
        kind: ErrorKind::Retryable,
        after: false,
    }
}

fn body(amount: i64) -> String {
    json!({"params": {"amount": amount}, "priority": "HIGH"}).to_string()
}

#[tokio::test]
async fn workflow_put_creates_then_updates_and_get_reads() {
    let app = App::new();
    let def = json!({"name": "Orders", "params_schema": {"type": "object"}}).to_string();
    let created = app
        .call("PUT", "/v1/workflows/orders", &[], Some(&def))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["online"], true, "online defaults to true");
    assert_eq!(created.body["version"], 1);
    let updated = app
        .call(
            "PUT",
            "/v1/workflows/orders",
            &[],
            Some(&def.replace("Orders", "Orders v2")),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body["created_at"], created.body["created_at"]);
    let read = app.call("GET", "/v1/workflows/orders", &[], None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "Orders v2");
    app.call("GET", "/v1/workflows/nope", &[], None)
        .await
        .assert_problem(404, "workflow-not-found");
}

#[tokio::test]
async fn workflow_put_rejects_bad_definitions() {
    let app = App::new();
    let cases = [
        json!({"name": "x", "params_schema": {"type": "no-such-type"}}),
        json!({"name": "x", "params_schema": 42}),
        json!({"name": "", "params_schema": {}}),
        json!({"name": "x"}),
        json!({"name": "x", "params_schema": {}, "extra": 1}),
    ];
    for case in cases {
        let reply = app
            .call("PUT", "/v1/workflows/orders", &[], Some(&case.to_string()))
            .await;
        reply.assert_problem(400, "invalid-request");
        assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    app.call(
        "PUT",
        "/v1/workflows/bad%20code",
        &[],
        Some(r#"{"name":"x","params_schema":{}}"#),
    )
    .await
    .assert_problem(400, "invalid-request");
}

#[tokio::test]
async fn start_is_accepted_with_location_and_ids() {
    let app = App::new();
    app.register("orders", true).await;
    let reply = app.call("POST", START, &[], Some(&body(5))).await;
    assert_eq!(reply.status, 202);
    let request_id = reply.body["request_id"].as_str().unwrap();
    assert_eq!(
        reply.header("location"),
        Some(format!("/v1/requests/{request_id}").as_str())
    );
    assert_eq!(reply.body["status"], "ACCEPTED");
    assert_eq!(reply.body["workflow"], "orders");
    assert!(reply.body["instance_id"].is_string());
    assert!(reply.header("idempotent-replayed").is_none());

    let view = app
        .call("GET", &format!("/v1/requests/{request_id}"), &[], None)
        .await;
    assert_eq!(view.status, 200);
    assert_eq!(view.body["status"], "ACCEPTED");
    let events: Vec<&str> = view.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["accepted", "enqueued"]);
    let instance = reply.body["instance_id"].as_str().unwrap();
    app.call("GET", &format!("/v1/instances/{instance}"), &[], None)
        .await
        .assert_problem(404, "instance-not-found");
}

#[tokio::test]
async fn prefer_wait_returns_201_once_created() {
    let app = App::new();
    app.register("orders", true).await;
    let _consumer = app.start_consumer();
    let reply = app
        .call("POST", START, &[("prefer", "wait=10")], Some(&body(5)))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["status"], "CREATED");
    assert_eq!(reply.header("preference-applied"), Some("wait=10"));
    let instance = reply.body["instance_id"].as_str().unwrap();
    let read = app
        .call("GET", &format!("/v1/instances/{instance}"), &[], None)
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["status"], "CREATED");
    assert_eq!(read.body["priority"], "HIGH");
    assert_eq!(read.body["params"], json!({"amount": 5}));
    assert_eq!(read.body["request_id"], reply.body["request_id"]);
}

#[tokio::test]
async fn prefer_wait_without_consumer_times_out_as_202() {
    let app = App::new();
    app.register("orders", true).await;
    let reply = app
        .call("POST", START, &[("prefer", "wait=1")], Some(&body(5)))
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.body["status"], "ACCEPTED");
}

#[tokio::test]
async fn replay_with_same_key_and_payload_returns_the_original() {
    let app = App::new();
    app.register("orders", true).await;
    let key = [("idempotency-key", "order-42")];
    let first = app.call("POST", START, &key, Some(&body(5))).await;
    assert_eq!(first.status, 202);
    // Same payload, keys in another order and other whitespace: still the same request.
    let same = r#"{ "priority": "HIGH", "params": {"amount": 5} }"#;
    let again = app.call("POST", START, &key, Some(same)).await;
    assert_eq!(again.status, 202, "not created yet");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["request_id"], first.body["request_id"]);
    assert_eq!(again.body["instance_id"], first.body["instance_id"]);

    let _consumer = app.start_consumer();
    let view = app
        .settled(first.body["request_id"].as_str().unwrap())
        .await;
    assert_eq!(view["status"], "CREATED");
    let after = app.call("POST", START, &key, Some(&body(5))).await;
    assert_eq!(after.status, 200, "created: 200");
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    assert_eq!(after.body["instance_id"], first.body["instance_id"]);
}

#[tokio::test]
async fn same_key_different_payload_is_422() {
    let app = App::new();
    app.register("orders", true).await;
    let key = [("idempotency-key", "k-1")];
    let first = app.call("POST", START, &key, Some(&body(5))).await;
    assert_eq!(first.status, 202);
    let reply = app.call("POST", START, &key, Some(&body(6))).await;
    reply.assert_problem(422, "idempotency-key-reused");
    assert_eq!(reply.body["request_id"], first.body["request_id"]);
}

#[tokio::test]
async fn keys_are_scoped_per_tenant() {
    let app = App::new();
    app.register("orders", true).await;
    let def = json!({"name": "o", "params_schema": {"type": "object"}}).to_string();
    let put = app
        .call_as(Some("acme"), "PUT", "/v1/workflows/orders", &[], Some(&def))
        .await;
    assert_eq!(put.status, 201, "tenants have their own workflows");
    let key = [("idempotency-key", "shared-key")];
    let mine = app.call("POST", START, &key, Some(&body(5))).await;
    let theirs = app
        .call_as(Some("acme"), "POST", START, &key, Some(&body(6)))
        .await;
    assert_eq!((mine.status.as_u16(), theirs.status.as_u16()), (202, 202));
    assert_ne!(mine.body["request_id"], theirs.body["request_id"]);
    let peek = app
        .call_as(
            Some("acme"),
            "GET",
            &format!("/v1/requests/{}", mine.body["request_id"].as_str().unwrap()),
            &[],
            None,
        )
        .await;
    peek.assert_problem(404, "request-not-found");
}

#[tokio::test]
async fn unknown_and_offline_workflows() {
    let app = App::new();
    app.call("POST", START, &[], Some(&body(5)))
        .await
        .assert_problem(404, "workflow-not-found");
    app.register("orders", false).await;
    app.call("POST", START, &[], Some(&body(5)))
        .await
        .assert_problem(409, "workflow-offline");
}

#[tokio::test]
async fn params_failing_the_schema_list_every_path() {
    let app = App::new();
    app.register("orders", true).await;
    let reply = app
        .call("POST", START, &[], Some(r#"{"params": {"amount": 0}}"#))
        .await;
    reply.assert_problem(400, "params-invalid");
    assert_eq!(reply.body["errors"][0]["pointer"], "/params/amount");
    let reply = app
        .call("POST", START, &[], Some(r#"{"params": {}}"#))
        .await;
    reply.assert_problem(400, "params-invalid");
    assert!(
        reply.body["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("amount")
    );
}

#[tokio::test]
async fn bad_bodies_and_headers_are_400_413_415() {
    let app = App::new();
    app.register("orders", true).await;
    app.call("POST", START, &[], Some("{not json"))
        .await
        .assert_problem(400, "malformed-json");
    app.call("POST", START, &[], Some(""))
        .await
        .assert_problem(400, "malformed-json");
    let big = json!({"params": {"amount": 1, "pad": "x".repeat(70 * 1024)}}).to_string();
    app.call("POST", START, &[], Some(&big))
        .await
        .assert_problem(413, "payload-too-large");
    for invalid in [
        r#"{"params": {"amount": 1}, "priority": "URGENT"}"#,
        r#"{"params": {"amount": 1}, "schedule_time": "tomorrow"}"#,
        r#"{"params": [1]}"#,
        r#"{"params": {"amount": 1}, "prority": "HIGH"}"#,
        // Not an object: a derived parse would take an array's items as the fields.
        r#"[{"amount": 1}]"#,
        r#"[{"amount": 1}, "HIGH"]"#,
        "42",
    ] {
        app.call("POST", START, &[], Some(invalid))
            .await
            .assert_problem(400, "invalid-request");
    }
    app.call("POST", START, &[("idempotency-key", "")], Some(&body(1)))
        .await
        .assert_problem(400, "invalid-request");
    let long = "k".repeat(256);
    app.call("POST", START, &[("idempotency-key", &long)], Some(&body(1)))
        .await
        .assert_problem(400, "invalid-request");
    app.call("POST", START, &[("prefer", "wait=21")], Some(&body(1)))
        .await
        .assert_problem(400, "invalid-request");
    let reply = app
        .call_as(None, "POST", START, &[("content-type", "text/plain")], None)
        .await;
    reply.assert_problem(415, "unsupported-media-type");
}

#[tokio::test]
async fn schedule_time_is_kept_in_utc() {
    let app = App::new();
    app.register("orders", true).await;
    let payload = r#"{"params": {"amount": 1}, "schedule_time": "2030-01-02T03:04:05+02:00"}"#;
    let reply = app.call("POST", START, &[], Some(payload)).await;
    assert_eq!(reply.status, 202);
    let view = app
        .call(
            "GET",
            &format!(
                "/v1/requests/{}",
                reply.body["request_id"].as_str().unwrap()
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(view.body["schedule_time"], "2030-01-02T01:04:05Z");
    assert_eq!(
        view.body["priority"], "MEDIUM",
        "priority defaults to MEDIUM"
    );
}

fn events(view: &Value) -> Vec<&str> {
    view["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["event"].as_str().expect("event"))
        .collect()
}

#[tokio::test]
async fn nothing_written_is_503_and_a_retry_completes() {
    let app = App::new();
    app.register("orders", true).await;
    let key = [("idempotency-key", "retry-me")];
    app.faults.set("store.put", fail_always()).unwrap();
    let reply = app.call("POST", START, &key, Some(&body(5))).await;
    reply.assert_problem(503, "unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        !reply.body["detail"].as_str().unwrap().contains("injected"),
        "no internals in 5xx"
    );
    app.faults.clear();
    let retry = app.call("POST", START, &key, Some(&body(5))).await;
    assert_eq!(retry.status, 202);
    assert!(
        retry.header("idempotent-replayed").is_none(),
        "the first that was written"
    );
    let _consumer = app.start_consumer();
    let view = app
        .settled(retry.body["request_id"].as_str().unwrap())
        .await;
    assert_eq!(events(&view), ["accepted", "enqueued", "created"]);
}

#[tokio::test]
async fn a_durable_request_whose_enqueue_fails_is_accepted_and_delivered() {
    let app = App::new();
    app.register("orders", true).await;
    // The record is written, but the send fails: the answer is 202, and no retry is needed.
    app.faults.set("queue.send", fail_always()).unwrap();
    let reply = app.call("POST", START, &[], Some(&body(5))).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let request_id = reply.body["request_id"].as_str().unwrap().to_owned();
    let view = app
        .call("GET", &format!("/v1/requests/{request_id}"), &[], None)
        .await;
    assert_eq!(events(&view.body), ["accepted", "enqueue_failed"]);
    let detail = view.body["history"][1]["detail"].as_str().unwrap();
    assert!(
        detail.contains("the reconciler sends it within"),
        "{detail}"
    );
    app.faults.clear();
    let _consumer = app.start_consumer();
    let _reconciler = app.start_reconciler(std::time::Duration::from_millis(200));
    let view = app.settled(&request_id).await;
    assert_eq!(view["status"], "CREATED");
    assert_eq!(view["attempts"], 1, "attempts counts deliveries");
    assert_eq!(
        events(&view),
        ["accepted", "enqueue_failed", "reenqueued", "created"]
    );
}

#[tokio::test]
async fn a_write_that_reported_failure_but_took_effect_is_accepted() {
    let app = App::new();
    app.register("orders", true).await;
    app.faults
        .apply("store.put=1.0:after")
        .expect("an ambiguous failure");
    let reply = app.call("POST", START, &[], Some(&body(5))).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.header("idempotent-replayed").is_none());
    app.faults.clear();
    let _consumer = app.start_consumer();
    let view = app
        .settled(reply.body["request_id"].as_str().unwrap())
        .await;
    assert_eq!(view["status"], "CREATED");
}

#[tokio::test]
async fn workflow_store_failure_is_503() {
    let app = App::new();
    app.register("orders", true).await;
    app.faults.set("store.get_workflow", fail_always()).unwrap();
    app.call("POST", START, &[], Some(&body(5)))
        .await
        .assert_problem(503, "unavailable");
    app.call("GET", "/healthz", &[], None)
        .await
        .assert_problem(503, "unavailable");
    app.faults.clear();
    let health = app.call("GET", "/healthz", &[], None).await;
    assert_eq!(
        (health.status.as_u16(), health.body.clone()),
        (200, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn instances_list_newest_first_with_cursor() {
    let app = App::new();
    app.register("orders", true).await;
    let _consumer = app.start_consumer();
    let mut ids = Vec::new();
    for n in 1..=5 {
        let r = app
            .call("POST", START, &[("prefer", "wait=10")], Some(&body(n)))
            .await;
        assert_eq!(r.status, 201);
        ids.push(r.body["instance_id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut uri = format!("{START}?limit=2");
    loop {
        let page = app.call("GET", &uri, &[], None).await;
        assert_eq!(page.status, 200);
        seen.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["instance_id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => uri = format!("{START}?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    app.call("GET", &format!("{START}?limit=0"), &[], None)
        .await
        .assert_problem(400, "invalid-request");
    app.call("GET", &format!("{START}?limit=x"), &[], None)
        .await
        .assert_problem(400, "invalid-request");
    app.call("GET", &format!("{START}?cursor=bogus"), &[], None)
        .await
        .assert_problem(400, "invalid-request");
    app.call("GET", "/v1/workflows/nope/instances", &[], None)
        .await
        .assert_problem(404, "workflow-not-found");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = App::new();
    app.call("GET", "/v2/nothing", &[], None)
        .await
        .assert_problem(404, "route-not-found");
    app.call("DELETE", "/v1/workflows/orders", &[], None)
        .await
        .assert_problem(405, "method-not-allowed");
    app.call("GET", "/v1/requests/unknown", &[], None)
        .await
        .assert_problem(404, "request-not-found");
    let reply = app.call("GET", "/healthz", &[], None).await;
    assert!(reply.header("x-request-id").is_some());
    let _: Value = reply.body;
}

/// Counts `accepted` starts by outcome, as a metrics sink would.
#[derive(Default)]
struct AcceptedCounts(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl flowgate_core::metrics::Metrics for AcceptedCounts {
    fn record(
        &self,
        metric: flowgate_core::metrics::Metric,
        labels: &flowgate_core::metrics::Labels<'_>,
        value: f64,
    ) {
        if metric == flowgate_core::metrics::Metric::Accepted {
            let mut counts = self.0.lock().expect("lock");
            *counts.entry(labels.outcome.to_owned()).or_default() += value as u64;
        }
    }
}

/// A client that goes away while its start is being written (the future of its request
/// dropped at every point of the way) still has its start counted as what it became: every
/// request written is counted `accepted`, and nothing else is. Before, a start dropped
/// after its write was written but never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_client_went_away_is_counted_as_written() {
    use tower::ServiceExt;
    let mut app = App::new();
    let counts = std::sync::Arc::new(AcceptedCounts::default());
    app.flowgate = app.flowgate.clone().with_metrics(counts.clone());
    app.router = flowgate_core::http::router(app.flowgate.clone());
    app.register("orders", true).await;
    let attempts = 300;
    for n in 0..attempts {
        let key = format!("gone-{n}");
        let mut request = axum::http::Request::builder()
            .method("POST")
            .uri(START)
            .header("content-type", "application/json")
            .header("idempotency-key", key.as_str())
            .body(axum::body::Body::from(body(1)))
            .expect("request");
        request
            .extensions_mut()
            .insert(flowgate_core::auth::Caller::all_scopes("default"));
        // Give up after a different moment each time: before, during and after the write.
        let patience = std::time::Duration::from_micros(20 * (n % 100));
        let _ = tokio::time::timeout(patience, app.router.clone().oneshot(request)).await;
    }
    // Whatever was admitted finishes on its own; then count what was written.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut written = 0;
    for n in 0..attempts {
        let id = flowgate_core::ids::request_id("default", Some(&format!("gone-{n}")));
        if app
            .raw_store
            .get_request("default", &id)
            .await
            .expect("read")
            .is_some()
        {
            written += 1;
        }
    }
    let counted = counts.0.lock().expect("lock").clone();
    assert_eq!(
        counted.get("accepted").copied().unwrap_or(0),
        written,
        "every start written is counted accepted, and only those: {counted:?}"
    );
    assert!(written > 0, "some starts were written");
}
