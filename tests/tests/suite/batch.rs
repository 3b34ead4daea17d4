//! `POST /v1/workflows/{code}/instances/batch` through the router: each start answered on
//! its own and in order, one bad start never refusing another, and nothing lost or
//! duplicated; the envelope's own refusals.

use serde_json::{Value, json};

use flowgate_core::ErrorKind;
use flowgate_core::faults::Fault;
use flowgate_tests::http::App;

const BATCH: &str = "/v1/workflows/orders/instances/batch";

fn batch(starts: &[Value]) -> String {
    json!({ "starts": starts }).to_string()
}

fn statuses(reply: &Value) -> Vec<u64> {
    reply["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().expect("a status"))
        .collect()
}

/// Every instance of `orders`, by request id.
async fn instances(app: &App) -> Vec<String> {
    let mut all = Vec::new();
    let mut query = "limit=100".to_owned();
    loop {
        let page = app
            .call(
                "GET",
                &format!("/v1/workflows/orders/instances?{query}"),
                &[],
                None,
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        all.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["request_id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=100&cursor={cursor}"),
            None => return all,
        }
    }
}

#[tokio::test]
async fn each_start_is_answered_in_order_and_one_bad_start_refuses_only_itself() {
    let app = App::new();
    app.register("orders", true).await;
    let earlier = app
        .call(
            "POST",
            "/v1/workflows/orders/instances",
            &[("idempotency-key", "earlier")],
            Some(r#"{"params":{"amount":7}}"#),
        )
        .await;
    assert_eq!(earlier.status, 202);
    let big = "x".repeat(70 * 1024);
    let starts = [
        json!({"idempotency_key": "a", "params": {"amount": 1}, "priority": "HIGH"}),
        json!({"idempotency_key": "earlier", "params": {"amount": 7}}),
        json!({"idempotency_key": "earlier", "params": {"amount": 8}}),
        json!({"params": {"amount": 0}}),
        json!({"params": {"amount": 2}, "extra": true}),
        json!({"idempotency_key": "a", "params": {"amount": 1}, "priority": "HIGH"}),
        json!({"params": {"amount": 3}, "schedule_time": "2026-01-01T00:00:00+02:00"}),
        json!({"idempotency_key": "", "params": {"amount": 4}}),
        json!({"params": {"amount": 5, "note": big}}),
        json!("not an object"),
        json!({"params": {"amount": 6}, "priority": null}),
    ];
    let mut body = batch(&starts);
    // A start that gives a key twice, which a parse into a map would silently resolve.
    body = body.replacen(
        r#""not an object""#,
        r#"{"params":{"amount":9},"params":{"amount":10}}"#,
        1,
    );
    let reply = app.call("POST", BATCH, &[], Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        statuses(&reply.body),
        [202, 202, 422, 400, 400, 202, 202, 400, 413, 400, 400],
        "{}",
        reply.body
    );
    let results = reply.body["results"].as_array().unwrap();
    let fresh = &results[0];
    assert_eq!(fresh["request_status"], "ACCEPTED");
    assert!(fresh.get("replayed").is_none() && fresh.get("problem").is_none());
    // A key seen before, same payload: the original; same key again in this batch: the
    // start of this batch.
    assert_eq!(results[1]["request_id"], earlier.body["request_id"]);
    assert_eq!(results[1]["instance_id"], earlier.body["instance_id"]);
    assert_eq!(results[1]["replayed"], true);
    assert_eq!(results[5]["request_id"], fresh["request_id"]);
    assert_eq!(results[5]["instance_id"], fresh["instance_id"]);
    assert_eq!(results[5]["replayed"], true);
    // Refusals carry their problem; a reused key names the request it belongs to.
    let reused = &results[2];
    assert_eq!(
        reused["problem"]["type"],
        "urn:flowgate:problem:idempotency-key-reused"
    );
    assert_eq!(reused["request_id"], earlier.body["request_id"]);
    assert_eq!(
        results[3]["problem"]["type"],
        "urn:flowgate:problem:params-invalid"
    );
    assert_eq!(
        results[3]["problem"]["errors"][0]["pointer"],
        "/params/amount"
    );
    for refused in [4, 7, 9, 10] {
        assert_eq!(
            results[refused]["problem"]["type"], "urn:flowgate:problem:invalid-request",
            "start {refused}: {}",
            results[refused]
        );
        assert!(results[refused].get("request_id").is_none());
    }
    assert_eq!(
        results[8]["problem"]["type"],
        "urn:flowgate:problem:payload-too-large"
    );
    assert_eq!(
        (
            &reply.body["accepted"],
            &reply.body["replayed"],
            &reply.body["refused"]
        ),
        (&json!(2), &json!(2), &json!(7))
    );

    // Exactly one instance per accepted request, and none for a refused start.
    let _consumer = app.start_consumer();
    let accepted: Vec<&str> = [0, 6]
        .iter()
        .map(|&i| results[i]["request_id"].as_str().unwrap())
        .chain([earlier.body["request_id"].as_str().unwrap()])
        .collect();
    for id in &accepted {
        assert_eq!(app.settled(id).await["status"], "CREATED");
    }
    let mut listed = instances(&app).await;
    listed.sort();
    let mut expected: Vec<String> = accepted.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let view = app
        .call("GET", &format!("/v1/requests/{}", accepted[0]), &[], None)
        .await;
    assert_eq!(view.body["priority"], "HIGH", "{}", view.body);
    let events: Vec<&str> = view.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["accepted", "enqueued", "created"]);
}

#[tokio::test]
async fn a_replayed_batch_answers_the_originals_and_creates_nothing_more() {
    let app = App::new();
    app.register("orders", true).await;
    let starts: Vec<Value> = (1..=50)
        .map(|n| json!({"idempotency_key": format!("k{n}"), "params": {"amount": n}}))
        .collect();
    let first = app.call("POST", BATCH, &[], Some(&batch(&starts))).await;
    assert_eq!(statuses(&first.body), vec![202; 50]);
    let _consumer = app.start_consumer();
    for r in first.body["results"].as_array().unwrap() {
        app.settled(r["request_id"].as_str().unwrap()).await;
    }
    let again = app.call("POST", BATCH, &[], Some(&batch(&starts))).await;
    assert_eq!(statuses(&again.body), vec![200; 50], "created, so 200");
    for (a, b) in first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again.body["results"].as_array().unwrap())
    {
        assert_eq!(a["request_id"], b["request_id"]);
        assert_eq!(a["instance_id"], b["instance_id"]);
        assert_eq!(b["request_status"], "CREATED");
    }
    assert_eq!(instances(&app).await.len(), 50);
}

#[tokio::test]
async fn the_envelope_is_refused_whole_above_500_starts_and_when_malformed() {
    let app = App::new();
    app.register("orders", true).await;
    let start = json!({"params": {"amount": 1}});
    let over = vec![start.clone(); 501];
    let reply = app.call("POST", BATCH, &[], Some(&batch(&over))).await;
    reply.assert_problem(400, "invalid-request");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("500"),
        "{}",
        reply.body
    );
    for bad in [
        r#"{"starts":[]}"#,
        r#"{}"#,
        r#"{"starts":{}}"#,
        r#"{"starts":[{"params":{"amount":1}}],"extra":1}"#,
        r#"{"starts":[],"starts":[]}"#,
        r#"[]"#,
        // An array is not the envelope, even where its items would fill its fields.
        r#"[[false, false, null]]"#,
        r#"[[{"params":{"amount":1}}]]"#,
        r#""starts""#,
    ] {
        app.call("POST", BATCH, &[], Some(bad))
            .await
            .assert_problem(400, "invalid-request");
    }
    for malformed in [r#"{"starts":[{"#, r#"[[false,"#] {
        app.call("POST", BATCH, &[], Some(malformed))
            .await
            .assert_problem(400, "malformed-json");
    }
    let huge = batch(&vec![
        json!({"params": {"amount": 1, "pad": "y".repeat(9000)}});
        500
    ]);
    assert!(huge.len() > 4 * 1024 * 1024);
    app.call("POST", BATCH, &[], Some(&huge))
        .await
        .assert_problem(413, "payload-too-large");
    // Exactly 500 is taken, and well over the single route's 64 KiB body.
    let full = batch(&vec![
        json!({"params": {"amount": 1, "pad": "z".repeat(200)}});
        500
    ]);
    assert!(full.len() > 64 * 1024);
    let reply = app.call("POST", BATCH, &[], Some(&full)).await;
    assert_eq!(statuses(&reply.body), vec![202; 500]);
    app.call("GET", BATCH, &[], None)
        .await
        .assert_problem(405, "method-not-allowed");
    assert!(instances(&app).await.is_empty(), "no consumer ran");
}

#[tokio::test]
async fn unknown_and_offline_workflows_refuse_each_start_but_a_known_key_replays() {
    let app = App::new();
    let start = json!({"idempotency_key": "k", "params": {"amount": 1}});
    let reply = app
        .call(
            "POST",
            "/v1/workflows/nope/instances/batch",
            &[],
            Some(&batch(&[start.clone(), start.clone()])),
        )
        .await;
    assert_eq!(statuses(&reply.body), [404, 404]);
    app.register("orders", true).await;
    let accepted = app
        .call(
            "POST",
            BATCH,
            &[],
            Some(&batch(std::slice::from_ref(&start))),
        )
        .await;
    assert_eq!(statuses(&accepted.body), [202]);
    app.register("orders", false).await;
    let other = json!({"params": {"amount": 2}});
    let reply = app
        .call("POST", BATCH, &[], Some(&batch(&[start, other])))
        .await;
    assert_eq!(statuses(&reply.body), [202, 409]);
    assert_eq!(
        reply.body["results"][0]["request_id"],
        accepted.body["results"][0]["request_id"]
    );
    assert_eq!(
        reply.body["results"][1]["problem"]["type"],
        "urn:flowgate:problem:workflow-offline"
    );
}

#[tokio::test]
async fn a_failed_write_is_503_for_its_starts_and_the_same_batch_again_completes() {
    let app = App::new();
    app.register("orders", true).await;
    let starts: Vec<Value> = (1..=5)
        .map(|n| json!({"idempotency_key": format!("r{n}"), "params": {"amount": n}}))
        .collect();
    app.faults
        .set(
            "store.put",
            Fault {
                rate: 1.0,
                kind: ErrorKind::Retryable,
                after: false,
            },
        )
        .unwrap();
    let failed = app.call("POST", BATCH, &[], Some(&batch(&starts))).await;
    assert_eq!(statuses(&failed.body), vec![503; 5], "{}", failed.body);
    let problem = &failed.body["results"][0]["problem"];
    assert_eq!(problem["type"], "urn:flowgate:problem:unavailable");
    assert!(!problem["detail"].as_str().unwrap().contains("injected"));
    app.faults.clear();
    let again = app.call("POST", BATCH, &[], Some(&batch(&starts))).await;
    assert_eq!(statuses(&again.body), vec![202; 5]);
    assert_eq!(
        again.body["replayed"], 0,
        "nothing was written the first time"
    );
    let _consumer = app.start_consumer();
    for r in again.body["results"].as_array().unwrap() {
        assert_eq!(
            app.settled(r["request_id"].as_str().unwrap()).await["status"],
            "CREATED"
        );
    }
    assert_eq!(instances(&app).await.len(), 5);
}

#[tokio::test]
async fn starts_whose_send_fails_are_accepted_and_the_reconciler_delivers_them() {
    let app = App::new();
    app.register("orders", true).await;
    app.faults
        .set(
            "queue.send",
            Fault {
                rate: 1.0,
                kind: ErrorKind::Retryable,
                after: false,
            },
        )
        .unwrap();
    let starts: Vec<Value> = (1..=3).map(|n| json!({"params": {"amount": n}})).collect();
    let reply = app.call("POST", BATCH, &[], Some(&batch(&starts))).await;
    assert_eq!(statuses(&reply.body), [202, 202, 202]);
    app.faults.clear();
    let _consumer = app.start_consumer();
    let _reconciler = app.start_reconciler(std::time::Duration::from_millis(200));
    for r in reply.body["results"].as_array().unwrap() {
        let view = app.settled(r["request_id"].as_str().unwrap()).await;
        let events: Vec<&str> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["accepted", "enqueue_failed", "reenqueued", "created"]
        );
    }
}
