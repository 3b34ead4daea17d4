//! What the real binary shows its operator: `/metrics` behind its own scope, counting each
//! outcome with bounded labels; the tenant's live counts; the operator page's files; and,
//! in a build with the `otlp` feature, spans exported in the caller's trace.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_tests::binary::Server;

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

/// A token of `tenant` with `scope`, made with `flowgate tokens create`.
fn token(dir: &std::path::Path, tenant: &str, scope: &str) -> String {
    let made = Command::new(BIN)
        .args([
            "tokens", "create", "--tenant", tenant, "--scope", scope, "--json",
        ])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run flowgate tokens");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: Value = serde_json::from_slice(&made.stdout).expect("json");
    made["token"].as_str().expect("a token").to_owned()
}

struct Caller<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    token: Option<&'a str>,
}

impl Caller<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("an answer")
    }

    async fn text(&self, path: &str) -> (u16, String) {
        let answer = self.call("GET", path, None).await;
        (
            answer.status().as_u16(),
            answer.text().await.unwrap_or_default(),
        )
    }
}

/// The value of the sample line that starts with `series ` in a Prometheus exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_their_own_scope_and_count_each_outcome() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let acme = token(dir.path(), "acme", "start,admin");
    let ops = token(dir.path(), "ops", "metrics");
    let server = Server::start(BIN, dir.path(), &[], &[]);
    server.wait_healthy(&client).await;
    let base = server.base.as_str();
    let tenant = Caller {
        client: &client,
        base,
        token: Some(&acme),
    };
    let monitor = Caller {
        client: &client,
        base,
        token: Some(&ops),
    };
    let nobody = Caller {
        client: &client,
        base,
        token: None,
    };

    let schema = json!({"name": "Orders", "params_schema": {"type": "object",
        "required": ["amount"], "properties": {"amount": {"type": "integer", "minimum": 1}}}});
    let put = tenant
        .call("PUT", "/v1/workflows/orders", Some(schema))
        .await;
    assert_eq!(put.status().as_u16(), 201);
    let mut request_ids = Vec::new();
    for n in 1..=3 {
        let started = tenant
            .call(
                "POST",
                "/v1/workflows/orders/instances",
                Some(json!({"params": {"amount": n}})),
            )
            .await;
        assert_eq!(started.status().as_u16(), 202);
        let body: Value = started.json().await.expect("json");
        request_ids.push(body["request_id"].as_str().expect("id").to_owned());
    }
    let refused = tenant
        .call(
            "POST",
            "/v1/workflows/orders/instances",
            Some(json!({"params": {"amount": 0}})),
        )
        .await;
    assert_eq!(refused.status().as_u16(), 400);
    let unknown = tenant
        .call(
            "POST",
            "/v1/workflows/no-such-one/instances",
            Some(json!({"params": {}})),
        )
        .await;
    assert_eq!(unknown.status().as_u16(), 404);

    // Only the `metrics` scope reads them: they cover every tenant.
    assert_eq!(nobody.text("/metrics").await.0, 401);
    assert_eq!(tenant.text("/metrics").await.0, 403);
    let mut text = String::new();
    for _ in 0..100 {
        let (status, body) = monitor.text("/metrics").await;
        assert_eq!(status, 200, "{body}");
        text = body;
        // Settled: every instance created, and every message acked (the ack commits after
        // the creation).
        let created = r#"flowgate_created_total{workflow="orders",outcome="created"}"#;
        if sample(&text, created) == Some(3.0) && sample(&text, "flowgate_queue_depth") == Some(0.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count(r#"flowgate_created_total{workflow="orders",outcome="created"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count(r#"flowgate_accepted_total{workflow="orders",outcome="accepted"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count(r#"flowgate_accepted_total{workflow="orders",outcome="refused"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(r#"flowgate_accepted_total{workflow="-",outcome="refused"}"#),
        Some(1.0),
        "an unknown workflow's name is the caller's, never a label: {text}"
    );
    assert!(!text.contains("no-such-one"), "{text}");
    assert_eq!(count("flowgate_lag_seconds_count"), Some(3.0), "{text}");
    assert_eq!(
        count("flowgate_accept_latency_seconds_count"),
        Some(3.0),
        "{text}"
    );
    assert!(
        count("flowgate_writer_batch_jobs_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        count("flowgate_writer_commit_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(count("flowgate_queue_depth"), Some(0.0), "{text}");
    assert_eq!(count("flowgate_dlq_depth"), Some(0.0), "{text}");
    for id in &request_ids {
        assert!(!text.contains(id.as_str()), "no request id is a label");
    }

    // The live counts are the caller's tenant's own, and need `start`.
    let live: Value = tenant
        .call("GET", "/v1/stats/live", None)
        .await
        .json()
        .await
        .expect("json");
    let total = |key: &str| {
        live["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|p| p[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!((total("accepted"), total("created")), (3, 3), "{live}");
    assert_eq!(live["counts"].as_array().map(Vec::len), Some(900));
    assert_eq!(monitor.text("/v1/stats/live").await.0, 403);

    // The operator page's files need no token, and carry their policy.
    let page = nobody.call("GET", "/ui", None).await;
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert!(page.text().await.expect("html").contains("/ui/app.js"));
    let script = nobody.call("GET", "/ui/app.js", None).await;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
}

/// With the exporter built in, the spans of a request reach an OTLP receiver in the trace
/// the caller named, and the request's history names that trace.
#[cfg(feature = "otlp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_in_the_callers_trace() {
    use std::sync::{Arc, Mutex};

    /// Each POST the receiver got: its path and its body.
    type Posts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let received: Posts = Arc::default();
    let seen = received.clone();
    let collector =
        axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .expect("lock")
                    .push((uri.path().to_owned(), body.to_vec()));
                axum::http::StatusCode::OK
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let server = Server::start(BIN, dir.path(), &["--otlp-endpoint", &endpoint], &[]);
    server.wait_healthy(&client).await;
    let base = server.base.clone();
    let open = Caller {
        client: &client,
        base: &base,
        token: None,
    };
    let put = open
        .call(
            "PUT",
            "/v1/workflows/traced",
            Some(json!({"name": "T", "params_schema": {"type": "object"}})),
        )
        .await;
    assert_eq!(put.status().as_u16(), 201);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let started = client
        .post(format!("{base}/v1/workflows/traced/instances"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("prefer", "wait=10")
        .json(&json!({"params": {}}))
        .send()
        .await
        .expect("start");
    assert_eq!(started.status().as_u16(), 201);
    let view: Value = started.json().await.expect("json");
    let record: Value = open
        .call(
            "GET",
            &format!("/v1/requests/{}", view["request_id"].as_str().expect("id")),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(record["history"][0]["trace_id"], trace_id, "{record}");
    // Stopping flushes the spans not yet sent.
    assert!(server.terminate().await.success());
    let raw: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let got = received.lock().expect("lock").clone();
    assert!(
        got.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let in_trace = got
        .iter()
        .filter(|(_, body)| body.windows(16).any(|w| w == raw.as_slice()))
        .count();
    assert!(
        in_trace >= 1,
        "no exported span carries the caller's trace id ({} posts)",
        got.len()
    );
}
