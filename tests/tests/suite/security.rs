//! Hostile input against the router: each defect the security probe found, refused the way
//! it should be (each of these failed before its fix), plus the access rules.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use flowgate_core::auth::{Caller, Scope};
use flowgate_core::http::{guarded, with_rate_limit};
use flowgate_tests::http::{App, send};

const PUT: &str = "/v1/workflows/orders";
const START: &str = "/v1/workflows/orders/instances";

/// The probe's schema: `anyOf` of two `$ref`s, nested `levels` deep.
fn ref_bomb(levels: usize) -> Value {
    let mut defs = serde_json::Map::new();
    defs.insert("d0".into(), json!({"type": "integer"}));
    for i in 1..=levels {
        let prev = format!("#/$defs/d{}", i - 1);
        defs.insert(
            format!("d{i}"),
            json!({"anyOf": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    json!({"type": "object", "properties": {"n": {"$ref": format!("#/$defs/d{levels}")}},
        "$defs": defs})
}

fn workflow(schema: Value) -> String {
    json!({"name": "orders", "params_schema": schema}).to_string()
}

#[tokio::test]
async fn a_schema_whose_validation_blows_up_is_refused_when_stored() {
    let app = App::new();
    for levels in [20, 22] {
        let started = Instant::now();
        let reply = app
            .call("PUT", PUT, &[], Some(&workflow(ref_bomb(levels))))
            .await;
        reply.assert_problem(400, "invalid-request");
        let reason = reply.body["errors"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            reason.contains("expands to") || reason.contains("combinators"),
            "{reason}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused quickly"
        );
    }
    let reply = app
        .call("PUT", PUT, &[], Some(&workflow(ref_bomb(3))))
        .await;
    assert_eq!(reply.status, 201, "a small one is fine: {}", reply.body);
}

#[tokio::test]
async fn a_backtracking_pattern_is_refused_and_a_linear_one_cannot_stall() {
    let app = App::new();
    for pattern in ["^(a|a)*\\1b", "^(?=a)a$", "(?<!x)a"] {
        let schema = json!({"type": "object", "properties": {"s": {"type": "array",
            "items": {"type": "string", "pattern": pattern}}}});
        app.call("PUT", PUT, &[], Some(&workflow(schema)))
            .await
            .assert_problem(400, "invalid-request");
    }
    // The probe's input against the nearest pattern a linear engine takes: no stall.
    let schema = json!({"type": "object", "properties": {"s": {"type": "array",
        "items": {"type": "string", "pattern": "^(a|a)*b"}}}});
    assert_eq!(
        app.call("PUT", PUT, &[], Some(&workflow(schema)))
            .await
            .status,
        201
    );
    let strings: Vec<String> = (0..1_700).map(|_| "a".repeat(25)).collect();
    let body = json!({"params": {"s": strings}}).to_string();
    assert!(body.len() < 64 * 1024);
    let started = Instant::now();
    let reply = app.call("POST", START, &[], Some(&body)).await;
    reply.assert_problem(400, "params-invalid");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_replay_rate_that_would_panic_is_a_400() {
    let app = App::new();
    for rate in ["5e-324", "0", "-1", "1e300"] {
        app.call(
            "POST",
            "/v1/dlq/replay",
            &[],
            Some(&format!(r#"{{"rate": {rate}}}"#)),
        )
        .await
        .assert_problem(400, "invalid-request");
    }
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem() {
    let router: Router = guarded(Router::new().route(
        "/boom",
        get(|| async {
            panic!("boom");
            #[allow(unreachable_code)]
            ""
        }),
    ));
    let request = axum::http::Request::get("/boom")
        .body(axum::body::Body::empty())
        .expect("request");
    let reply = send(&router, request).await;
    reply.assert_problem(500, "internal");
    assert!(
        !reply.body["detail"].as_str().unwrap_or("").contains("boom"),
        "no internals"
    );
}

#[tokio::test]
async fn repeated_parameters_and_paths_that_are_not_text_are_problems() {
    let app = App::new();
    app.register("orders", true).await;
    app.call("GET", &format!("{START}?limit=1&limit=2"), &[], None)
        .await
        .assert_problem(400, "invalid-request");
    app.call("GET", "/v1/requests/%ff", &[], None)
        .await
        .assert_problem(400, "invalid-request");
    app.call("GET", "/v1/dlq?workflow=a&workflow=b", &[], None)
        .await
        .assert_problem(400, "invalid-request");
}

#[tokio::test]
async fn smaller_input_defects_are_refused() {
    let app = App::new();
    app.register("orders", true).await;
    for body in [
        r#"{"params": {"amount": 1}, "priority": {"HIGH": null}}"#,
        r#"{"params": {"amount": 1}, "priority": ["HIGH"]}"#,
        r#"{"params": {"amount": 1, "big": 18446744073709551616}}"#,
        r#"{"params": {"amount": -9223372036854775809}}"#,
    ] {
        app.call("POST", START, &[], Some(body))
            .await
            .assert_problem(400, "invalid-request");
    }
    let two_keys = [("idempotency-key", "a"), ("idempotency-key", "b")];
    app.call(
        "POST",
        START,
        &two_keys,
        Some(r#"{"params": {"amount": 1}}"#),
    )
    .await
    .assert_problem(400, "invalid-request");
    let named = json!({"name": "bad\u{7}name", "params_schema": {}}).to_string();
    app.call("PUT", "/v1/workflows/named", &[], Some(&named))
        .await
        .assert_problem(400, "invalid-request");
    // The largest 64-bit integers are kept exactly.
    let exact = r#"{"params": {"amount": 18446744073709551615}}"#;
    let reply = app.call("POST", START, &[], Some(exact)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
}

#[tokio::test]
async fn no_caller_is_401_and_a_missing_scope_403() {
    let app = App::new();
    app.register("orders", true).await;
    app.call_by(None, "GET", PUT, &[], None)
        .await
        .assert_problem(401, "unauthenticated");
    let starter = Caller {
        scopes: vec![Scope::Start],
        ..Caller::all_scopes("default")
    };
    let def = workflow(json!({"type": "object"}));
    app.call_by(Some(starter.clone()), "PUT", PUT, &[], Some(&def))
        .await
        .assert_problem(403, "forbidden");
    app.call_by(Some(starter.clone()), "GET", "/v1/dlq", &[], None)
        .await
        .assert_problem(403, "forbidden");
    let reply = app.call_by(Some(starter), "GET", PUT, &[], None).await;
    assert_eq!(reply.status, 200, "reading needs only the start scope");
    let health = app.call_by(None, "GET", "/healthz", &[], None).await;
    assert_eq!(health.status, 200, "health needs no caller");
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() {
    let app = App::new();
    let limited = with_rate_limit(app.router.clone(), 3);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut request = axum::http::Request::get("/v1/workflows/none")
            .body(axum::body::Body::empty())
            .expect("request");
        request.extensions_mut().insert(Caller::all_scopes("busy"));
        let reply = send(&limited, request).await;
        statuses.push(reply.status.as_u16());
        if reply.status == 429 {
            reply.assert_problem(429, "rate-limited");
            assert_eq!(reply.header("retry-after"), Some("1"));
        }
    }
    assert_eq!(statuses, [404, 404, 404, 429, 429]);
    let mut other = axum::http::Request::get("/v1/workflows/none")
        .body(axum::body::Body::empty())
        .expect("request");
    other.extensions_mut().insert(Caller::all_scopes("calm"));
    assert_eq!(
        send(&limited, other).await.status,
        404,
        "tenants are limited apart"
    );
}

#[tokio::test]
async fn a_second_tenant_can_never_reach_the_first_ones_data_on_any_route() {
    let app = App::new();
    let _consumer = app.start_consumer();
    flowgate_tests::isolation::tenants_stay_apart(&flowgate_tests::isolation::Router(&app)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_pool_stays_within_its_bound_under_load() {
    use flowgate_core::ports::Store;
    use flowgate_embedded::{Embedded, EmbeddedConfig};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Embedded::open(
        dir.path(),
        EmbeddedConfig {
            read_pool: 4,
            ..EmbeddedConfig::default()
        },
    )
    .expect("open");
    let mut reads = tokio::task::JoinSet::new();
    for n in 0..400 {
        let store = store.clone();
        reads.spawn(async move { store.get_request("t", &format!("r-{n}")).await });
    }
    while let Some(read) = reads.join_next().await {
        assert!(read.expect("task").expect("read").is_none());
    }
    assert!(
        store.readers_opened() <= 4,
        "{} read connections",
        store.readers_opened()
    );
}
