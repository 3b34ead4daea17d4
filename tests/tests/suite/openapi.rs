//! Keeps the OpenAPI document true: every route and status code it documents is produced
//! by a scenario here, and every reply's status, content type and body match the document.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use flowgate_core::ErrorKind;
use flowgate_core::auth::Caller;
use flowgate_core::faults::Fault;
use flowgate_core::http::OPENAPI;
use flowgate_core::http::with_rate_limit;
use flowgate_tests::http::{App, Reply, send};

struct Contract {
    spec: Value,
    covered: BTreeSet<(String, String, u16)>,
}

impl Contract {
    fn new() -> Self {
        let spec: Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert_eq!(spec["openapi"], "3.1.0");
        Self {
            spec,
            covered: BTreeSet::new(),
        }
    }

    /// Checks a reply against the document's response for (path template, method, status).
    fn check(&mut self, template: &str, method: &str, reply: &Reply) {
        let status = reply.status.as_u16();
        let method = method.to_ascii_lowercase();
        let mut response = &self.spec["paths"][template][&method]["responses"][status.to_string()];
        if let Some(pointer) = response["$ref"].as_str() {
            response = self
                .spec
                .pointer(pointer.trim_start_matches('#'))
                .expect("a $ref into the document");
        }
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which is not documented: {}",
            reply.body
        );
        if response["content"].is_null() {
            // A response documented without content (204) has none.
            assert_eq!(
                reply.body,
                Value::Null,
                "{method} {template} {status} has a body"
            );
            self.covered.insert((template.to_owned(), method, status));
            return;
        }
        let content_type = reply
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        let schema = &response["content"][&content_type]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: content type {content_type} not documented"
        );
        let mut root = schema.clone();
        root["components"] = self.spec["components"].clone();
        let validator = jsonschema::validator_for(&root).expect("response schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&reply.body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: body {} violates the document: {errors:?}",
            reply.body
        );
        for (name, _) in response["headers"].as_object().into_iter().flatten() {
            let always = name == "Retry-After" || name == "Location";
            if always {
                assert!(
                    reply.header(name).is_some(),
                    "{method} {template} {status}: missing header {name}"
                );
            }
        }
        self.covered.insert((template.to_owned(), method, status));
    }

    /// Sends `call`, asserts it answers `expect`, and checks the reply against the document.
    async fn expect(&mut self, app: &App, call: Call<'_>, expect: u16) -> Reply {
        let reply = app
            .call(call.method, call.uri, call.headers, call.body)
            .await;
        assert_eq!(
            reply.status.as_u16(),
            expect,
            "{} {}: {}",
            call.method,
            call.uri,
            reply.body
        );
        self.check(call.template, call.method, &reply);
        reply
    }

    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.spec["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for status in responses.keys() {
                    all.insert((
                        path.clone(),
                        method.clone(),
                        status.parse().expect("numeric status"),
                    ));
                }
            }
        }
        all
    }
}

/// One call of the scenario: the documented route it exercises, and what is sent.
#[derive(Clone, Copy)]
struct Call<'a> {
    template: &'a str,
    method: &'a str,
    uri: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: Option<&'a str>,
}

const fn call<'a>(template: &'a str, method: &'a str, uri: &'a str) -> Call<'a> {
    Call {
        template,
        method,
        uri,
        headers: &[],
        body: None,
    }
}

impl<'a> Call<'a> {
    const fn body(self, body: &'a str) -> Self {
        Call {
            body: Some(body),
            ..self
        }
    }

    const fn headers(self, headers: &'a [(&'a str, &'a str)]) -> Self {
        Call { headers, ..self }
    }
}

fn fault(kind: ErrorKind) -> Fault {
    Fault {
        rate: 1.0,
        kind,
        after: false,
    }
}

const WF: &str = "/v1/workflows/{code}";
const INST: &str = "/v1/workflows/{code}/instances";
const REQ: &str = "/v1/requests/{request_id}";
const ONE: &str = "/v1/instances/{instance_id}";
const FIND: &str = "/v1/find";
const DLQ: &str = "/v1/dlq";
const REPLAY: &str = "/v1/dlq/replay";
const START: &str =
    r#"{"params": {"amount": 2}, "priority": "LOW", "schedule_time": "2031-01-01T00:00:00Z"}"#;
const TEXT: &[(&str, &str)] = &[("content-type", "text/plain")];
const KEY: &[(&str, &str)] = &[("idempotency-key", "c-1")];

fn definition() -> String {
    json!({"name": "Orders", "params_schema": {"type": "object", "required": ["amount"],
        "properties": {"amount": {"type": "integer", "minimum": 1}}}})
    .to_string()
}

/// Registration and reading of workflows, with every refusal.
async fn workflow_routes(c: &mut Contract, app: &App) {
    let def = definition();
    let put = call(WF, "PUT", "/v1/workflows/orders");
    c.expect(app, put.body(&def), 201).await;
    c.expect(app, put.body(&def), 200).await;
    c.expect(app, put.body("{"), 400).await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70_000));
    c.expect(app, put.body(&big), 413).await;
    c.expect(app, put.headers(TEXT), 415).await;
    c.expect(app, call(WF, "GET", "/v1/workflows/orders"), 200)
        .await;
    c.expect(app, call(WF, "GET", "/v1/workflows/no-such"), 404)
        .await;
    c.expect(app, call(WF, "GET", "/v1/workflows/bad%20code"), 400)
        .await;
    let offline = def.replace("\"Orders\"", "\"Orders\", \"online\": false");
    app.call("PUT", "/v1/workflows/offline", &[], Some(&offline))
        .await;
    // Each kind of target, as stored and shown (the secret never).
    for (status, target) in [201, 200, 200].into_iter().zip([
        json!({"type": "webhook", "url": "https://hooks.example.com/x", "timeout": "5s", "secret": "s"}),
        json!({"type": "stepfunctions",
            "state_machine_arn": "arn:aws:states:eu-west-1:123456789012:stateMachine:etl"}),
        json!({"type": "eventbridge", "event_bus": "default", "source": "a.b", "detail_type": "C"}),
    ]) {
        let body = json!({"name": "Hooked", "params_schema": {"type": "object"}, "target": target});
        let put = call(WF, "PUT", "/v1/workflows/hooked");
        c.expect(app, put.body(&body.to_string()), status).await;
        let shown = c.expect(app, call(WF, "GET", "/v1/workflows/hooked"), 200).await;
        assert!(shown.body["target"].get("secret").is_none(), "{}", shown.body);
    }
    let bad = json!({"name": "Hooked", "params_schema": {"type": "object"},
        "target": {"type": "webhook", "url": "ftp://x"}});
    c.expect(
        app,
        call(WF, "PUT", "/v1/workflows/hooked").body(&bad.to_string()),
        400,
    )
    .await;
}

/// Starts without a consumer: accepted, replayed, refused. Answers the accepted request.
async fn start_routes(c: &mut Contract, app: &App) -> (String, String) {
    let start = call(INST, "POST", "/v1/workflows/orders/instances");
    let accepted = c.expect(app, start.headers(KEY).body(START), 202).await;
    c.expect(app, start.headers(KEY).body(START), 202).await;
    c.expect(
        app,
        start.headers(KEY).body(r#"{"params": {"amount": 3}}"#),
        422,
    )
    .await;
    c.expect(app, start.body(r#"{"params": {"amount": 0}}"#), 400)
        .await;
    let none = call(INST, "POST", "/v1/workflows/none/instances");
    c.expect(app, none.body(START), 404).await;
    let offline = call(INST, "POST", "/v1/workflows/offline/instances");
    c.expect(app, offline.body(START), 409).await;
    let big = format!("{{\"params\": {{\"pad\": \"{}\"}}}}", "x".repeat(70_000));
    c.expect(app, start.body(&big), 413).await;
    c.expect(app, start.headers(TEXT), 415).await;
    let id = |f: &str| accepted.body[f].as_str().expect("id").to_owned();
    (id("request_id"), id("instance_id"))
}

/// The batch route: every start answered in a 200, and the envelope's own refusals.
async fn batch_routes(c: &mut Contract, app: &App) {
    const BATCH: &str = "/v1/workflows/{code}/instances/batch";
    let batch = call(BATCH, "POST", "/v1/workflows/orders/instances/batch");
    let starts = r#"{"starts": [{"idempotency_key": "b-1", "params": {"amount": 1}},
        {"idempotency_key": "c-1", "params": {"amount": 3}}, {"params": {"amount": 0}}, 7]}"#;
    let answered = c.expect(app, batch.body(starts), 200).await;
    let statuses: Vec<u64> = answered.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().expect("a status"))
        .collect();
    assert_eq!(statuses, [202, 422, 400, 400], "{}", answered.body);
    c.expect(app, batch.body(r#"{"starts": []}"#), 400).await;
    c.expect(app, batch.body(r#"{"starts": [{}"#), 400).await;
    let big = format!(
        r#"{{"starts": [{{"params": {{"pad": "{}"}}}}]}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    c.expect(app, batch.body(&big), 413).await;
    c.expect(app, batch.headers(TEXT), 415).await;
}

/// With a consumer: waits, replays of created requests, and the reads.
async fn read_routes(c: &mut Contract, app: &App, request_id: &str, instance_id: &str) {
    let instance_uri = format!("/v1/instances/{instance_id}");
    c.expect(app, call(ONE, "GET", &instance_uri), 404).await;
    let _consumer = app.start_consumer();
    let start = call(INST, "POST", "/v1/workflows/orders/instances");
    c.expect(
        app,
        start.headers(&[("prefer", "wait=10")]).body(START),
        201,
    )
    .await;
    app.settled(request_id).await;
    c.expect(app, start.headers(KEY).body(START), 200).await;
    c.expect(
        app,
        call(REQ, "GET", &format!("/v1/requests/{request_id}")),
        200,
    )
    .await;
    c.expect(app, call(REQ, "GET", "/v1/requests/nope"), 404)
        .await;
    c.expect(app, call(REQ, "GET", "/v1/requests/%ff"), 400)
        .await;
    c.expect(app, call(ONE, "GET", &instance_uri), 200).await;
    c.expect(app, call(ONE, "GET", "/v1/instances/%ff"), 400)
        .await;
    for q in [request_id, instance_id, "c-1"] {
        c.expect(app, call(FIND, "GET", &format!("/v1/find?q={q}")), 200)
            .await;
    }
    c.expect(app, call(FIND, "GET", "/v1/find?q=nope%20nope"), 404)
        .await;
    let long = format!("/v1/find?q={}", "k".repeat(256));
    for bad in [
        "/v1/find",
        "/v1/find?q=%ff",
        "/v1/find?q=a&q=b",
        "/v1/find?q=a&x=1",
        "/v1/find?q=%22%22",
        &long,
    ] {
        c.expect(app, call(FIND, "GET", bad), 400).await;
    }
    audit_route(c, app).await;
    let list = |uri| call(INST, "GET", uri);
    c.expect(app, list("/v1/workflows/orders/instances?limit=1"), 200)
        .await;
    c.expect(app, list("/v1/workflows/orders/instances?limit=500"), 400)
        .await;
    c.expect(
        app,
        list("/v1/workflows/orders/instances?limit=1&limit=2"),
        400,
    )
    .await;
    c.expect(app, list("/v1/workflows/none/instances"), 404)
        .await;
}

/// Each of `calls` with every fault point in `points` failing retryably (503), then
/// permanently (500).
async fn under_faults(c: &mut Contract, app: &App, points: &[&str], calls: &[Call<'_>]) {
    for (kind, status) in [(ErrorKind::Retryable, 503), (ErrorKind::Permanent, 500)] {
        for point in points {
            app.faults.set(point, fault(kind)).expect("point");
        }
        for each in calls {
            c.expect(app, *each, status).await;
        }
        app.faults.clear();
    }
}

/// A run's routes: reports by the rules (a repeat, a conflict), cancels, their refusals and
/// failures.
async fn run_routes(c: &mut Contract, app: &App, request_id: &str, instance_id: &str) {
    const STATUS: &str = "/v1/instances/{instance_id}/status";
    const CANCEL: &str = "/v1/instances/{instance_id}/cancel";
    let status_uri = format!("/v1/instances/{instance_id}/status");
    let report = |body| call(STATUS, "POST", &status_uri).body(body);
    c.expect(app, report(r#"{"status":"RUNNING"}"#), 200).await;
    c.expect(
        app,
        report(r#"{"status":"SUCCEEDED","output":{"n":1}}"#),
        200,
    )
    .await;
    c.expect(app, report(r#"{"status":"FAILED"}"#), 409).await;
    c.expect(app, report(r#"{"status":"RUNNING"}"#), 200).await;
    // The history now holds the run's events (and the late report's): each one documented.
    c.expect(
        app,
        call(REQ, "GET", &format!("/v1/requests/{request_id}")),
        200,
    )
    .await;
    c.expect(app, report(r#"{"status":"DONE"}"#), 400).await;
    c.expect(app, report(r#"{"status":"RUNNING"}"#).headers(TEXT), 415)
        .await;
    let huge = format!(r#"{{"status":"FAILED","detail":"{}"}}"#, "x".repeat(70_000));
    c.expect(app, report(&huge), 413).await;
    c.expect(
        app,
        call(STATUS, "POST", "/v1/instances/nope/status").body(r#"{"status":"RUNNING"}"#),
        404,
    )
    .await;
    let cancel_uri = format!("/v1/instances/{instance_id}/cancel");
    c.expect(app, call(CANCEL, "POST", &cancel_uri), 409).await;
    c.expect(app, call(CANCEL, "POST", "/v1/instances/nope/cancel"), 404)
        .await;
    c.expect(app, call(CANCEL, "POST", "/v1/instances/%ff/cancel"), 400)
        .await;
    let _consumer = app.start_consumer();
    let fresh = c
        .expect(
            app,
            call(INST, "POST", "/v1/workflows/orders/instances")
                .headers(&[("prefer", "wait=10")])
                .body(START),
            201,
        )
        .await;
    let fresh_id = fresh.body["instance_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let fresh_cancel = format!("/v1/instances/{fresh_id}/cancel");
    c.expect(app, call(CANCEL, "POST", &fresh_cancel), 200)
        .await;
    under_faults(
        c,
        app,
        &["store.get_instance"],
        &[
            report(r#"{"status":"RUNNING"}"#),
            call(CANCEL, "POST", &cancel_uri),
        ],
    )
    .await;
}

/// Every backend call failing retryably (503) and then permanently (500).
async fn failure_routes(c: &mut Contract, app: &App, request_id: &str, instance_id: &str) {
    let def = definition();
    let (request_uri, instance_uri) = (
        format!("/v1/requests/{request_id}"),
        format!("/v1/instances/{instance_id}"),
    );
    let find_uri = format!("/v1/find?q={request_id}");
    let points = [
        "store.get_workflow",
        "store.put_workflow",
        "store.get",
        "store.get_instance",
    ];
    let calls = [
        call("/healthz", "GET", "/healthz"),
        call(WF, "PUT", "/v1/workflows/orders").body(&def),
        call(WF, "GET", "/v1/workflows/orders"),
        call(INST, "POST", "/v1/workflows/orders/instances").body(START),
        call(INST, "GET", "/v1/workflows/orders/instances"),
        call(REQ, "GET", &request_uri),
        call(ONE, "GET", &instance_uri),
        call(FIND, "GET", &find_uri),
    ];
    under_faults(c, app, &points, &calls).await;
}

/// The dead-letter routes: a listing, a dry run, a replay, their refusals and failures.
async fn dlq_routes(c: &mut Contract, app: &App) {
    c.expect(
        app,
        call(DLQ, "GET", "/v1/dlq?limit=5&error=permanent"),
        200,
    )
    .await;
    c.expect(app, call(DLQ, "GET", "/v1/dlq?older_than=soon"), 400)
        .await;
    c.expect(app, call(DLQ, "GET", "/v1/dlq?workflw=orders"), 400)
        .await;
    let replay = call(REPLAY, "POST", REPLAY);
    let dry = r#"{"workflow": "orders", "dry_run": true, "max": 10, "older_than": "1s"}"#;
    c.expect(app, replay.body(dry), 200).await;
    c.expect(app, replay.body(r#"{"max": 0}"#), 400).await;
    c.expect(app, replay.body(r#"{"rate": -1}"#), 400).await;
    c.expect(app, replay.headers(TEXT), 415).await;
    let huge = format!(r#"{{"workflow": "{}"}}"#, "x".repeat(70_000));
    c.expect(app, replay.body(&huge), 413).await;
    let calls = [call(DLQ, "GET", DLQ), replay.body("{}")];
    under_faults(c, app, &["dlq.peek", "dlq.claim"], &calls).await;
}

/// Schedules: put, read, list, delete, and their refusals and failures.
async fn schedule_routes(c: &mut Contract, app: &App) {
    const ONE_S: &str = "/v1/workflows/{code}/schedules/{id}";
    const ALL_S: &str = "/v1/workflows/{code}/schedules";
    const TENANT_S: &str = "/v1/schedules";
    let body =
        r#"{"cron": "0 0 3/6 * * ? *", "timezone": "Europe/Berlin", "params": {"amount": 1}}"#;
    let put = call(ONE_S, "PUT", "/v1/workflows/orders/schedules/nightly");
    c.expect(app, put.body(body), 201).await;
    c.expect(app, put.body(body), 200).await;
    c.expect(app, put.body(r#"{"cron": "* * *"}"#), 400).await;
    let big = format!("{{\"cron\": \"{}\"}}", "x".repeat(70_000));
    c.expect(app, put.body(&big), 413).await;
    c.expect(app, put.headers(TEXT), 415).await;
    let elsewhere = call(ONE_S, "PUT", "/v1/workflows/none/schedules/nightly");
    c.expect(app, elsewhere.body(body), 404).await;
    c.expect(
        app,
        call(ONE_S, "GET", "/v1/workflows/orders/schedules/nightly"),
        200,
    )
    .await;
    c.expect(
        app,
        call(ONE_S, "GET", "/v1/workflows/orders/schedules/nope"),
        404,
    )
    .await;
    c.expect(
        app,
        call(ONE_S, "GET", "/v1/workflows/orders/schedules/bad%20id"),
        400,
    )
    .await;
    c.expect(
        app,
        call(ALL_S, "GET", "/v1/workflows/orders/schedules"),
        200,
    )
    .await;
    c.expect(app, call(ALL_S, "GET", "/v1/workflows/none/schedules"), 404)
        .await;
    c.expect(app, call(TENANT_S, "GET", "/v1/schedules"), 200)
        .await;
    c.expect(
        app,
        call(ALL_S, "GET", "/v1/workflows/bad%20code/schedules"),
        400,
    )
    .await;
    let calls = [
        put.body(body),
        call(ONE_S, "GET", "/v1/workflows/orders/schedules/nightly"),
        call(ALL_S, "GET", "/v1/workflows/orders/schedules"),
        call(ONE_S, "DELETE", "/v1/workflows/orders/schedules/nightly"),
    ];
    under_faults(c, app, &["store.get_workflow"], &calls).await;
    let listing = [call(TENANT_S, "GET", "/v1/schedules")];
    under_faults(c, app, &["schedules.list_tenant"], &listing).await;
    let delete = call(ONE_S, "DELETE", "/v1/workflows/orders/schedules/nightly");
    c.expect(app, delete, 204).await;
    c.expect(app, delete, 404).await;
    c.expect(
        app,
        call(ONE_S, "DELETE", "/v1/workflows/orders/schedules/bad%20id"),
        400,
    )
    .await;
}

/// Backfills: a dry run, a start, progress, control, and their refusals and failures.
async fn backfill_routes(c: &mut Contract, app: &App) {
    const START_B: &str = "/v1/workflows/{code}/backfills";
    const ONE_B: &str = "/v1/backfills/{id}";
    const LIST_B: &str = "/v1/backfills";
    const CONTROL: &str = "/v1/backfills/{id}/{action}";
    let post = call(START_B, "POST", "/v1/workflows/orders/backfills");
    let dates =
        r#"{"dates": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"], "params": {"amount": 1}}"#;
    c.expect(
        app,
        post.body(r#"{"dates": ["2026-01-01T00:00:00Z"], "dry_run": true}"#),
        200,
    )
    .await;
    let started = c.expect(app, post.body(dates), 202).await;
    // With a key: a retry is the same backfill; another payload under it is 422.
    let keyed = post.headers(&[("idempotency-key", "bf-1")]);
    let first = c.expect(app, keyed.body(dates), 202).await;
    let again = c.expect(app, keyed.body(dates), 202).await;
    assert_eq!(first.body["backfill_id"], again.body["backfill_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = r#"{"dates": ["2026-02-01T00:00:00Z"], "params": {"amount": 1}}"#;
    let reused = c.expect(app, keyed.body(other), 422).await;
    assert_eq!(reused.body["backfill_id"], first.body["backfill_id"]);
    c.expect(app, post.body(r#"{"dates": []}"#), 400).await;
    let big = format!("{{\"cron\": \"{}\"}}", "x".repeat(70_000));
    c.expect(app, post.body(&big), 413).await;
    c.expect(app, post.headers(TEXT), 415).await;
    c.expect(
        app,
        call(START_B, "POST", "/v1/workflows/none/backfills").body(dates),
        404,
    )
    .await;
    let id = started.body["backfill_id"].as_str().expect("id").to_owned();
    let one = format!("/v1/backfills/{id}");
    c.expect(app, call(ONE_B, "GET", &one), 200).await;
    c.expect(app, call(LIST_B, "GET", "/v1/backfills"), 200)
        .await;
    c.expect(app, call(ONE_B, "GET", "/v1/backfills/nope"), 404)
        .await;
    c.expect(app, call(ONE_B, "GET", "/v1/backfills/bad%20id"), 400)
        .await;
    let control = |action: &str| format!("/v1/backfills/{id}/{action}");
    c.expect(app, call(CONTROL, "POST", &control("pause")), 200)
        .await;
    c.expect(app, call(CONTROL, "POST", &control("cancel")), 200)
        .await;
    c.expect(app, call(CONTROL, "POST", &control("resume")), 409)
        .await;
    c.expect(app, call(CONTROL, "POST", "/v1/backfills/nope/pause"), 404)
        .await;
    c.expect(
        app,
        call(CONTROL, "POST", "/v1/backfills/bad%20id/pause"),
        400,
    )
    .await;
    let pause = control("pause");
    let calls = [
        post.body(dates),
        call(ONE_B, "GET", &one),
        call(CONTROL, "POST", &pause),
        call(LIST_B, "GET", "/v1/backfills"),
    ];
    let points = ["store.get_workflow", "backfills.get", "backfills.list"];
    under_faults(c, app, &points, &calls).await;
}

/// The DolphinScheduler door on both paths: a start, a complement, each DolphinScheduler
/// code, a malformed call, an oversized form, and backend failures.
async fn dolphin_routes(c: &mut Contract, app: &App) {
    const V31: &str = "/dolphinscheduler/projects/{projectCode}/executors/start-process-instance";
    const V33: &str = "/dolphinscheduler/projects/{projectCode}/executors/start-workflow-instance";
    const FORM: &[(&str, &str)] = &[("content-type", "application/x-www-form-urlencoded")];
    for (code, online, ds) in [("ds-orders", true, 9001), ("ds-offline", false, 9002)] {
        let body = json!({"name": code, "online": online, "params_schema": {"type": "object"},
            "ds_code": ds, "ds_project_code": 77});
        c.expect(
            app,
            call(WF, "PUT", &format!("/v1/workflows/{code}")).body(&body.to_string()),
            201,
        )
        .await;
    }
    let v31 = call(
        V31,
        "POST",
        "/dolphinscheduler/projects/77/executors/start-process-instance",
    )
    .headers(FORM);
    let envelope = |reply: &Reply, code: i64| {
        assert_eq!(reply.body["code"], code, "{}", reply.body);
    };
    const REQUIRED: &str = "failureStrategy=CONTINUE&warningType=NONE&scheduleTime=";
    let started = c
        .expect(
            app,
            v31.body(&format!("processDefinitionCode=9001&{REQUIRED}")),
            200,
        )
        .await;
    envelope(&started, 0);
    let complement = concat!(
        "processDefinitionCode=9001&failureStrategy=END&warningType=NONE&",
        "execType=COMPLEMENT_DATA&scheduleTime=",
        "%7B%22complementScheduleDateList%22%3A%222024-01-01%2000%3A00%3A00%22%7D"
    );
    envelope(&c.expect(app, v31.body(complement), 200).await, 0);
    let v33 = format!(
        "/dolphinscheduler/projects/77/executors/start-workflow-instance\
         ?workflowDefinitionCode=9001&workflowInstancePriority=HIGH&{REQUIRED}"
    );
    envelope(&c.expect(app, call(V33, "POST", &v33), 200).await, 0);
    for (form, code) in [
        (format!("processDefinitionCode=9999&{REQUIRED}"), 50003),
        (format!("processDefinitionCode=9002&{REQUIRED}"), 50004),
        ("processDefinitionCode=9001".to_owned(), 50014),
        (
            format!("processDefinitionCode=9001&{REQUIRED}&runMode=X"),
            50014,
        ),
        (
            format!("processDefinitionCode=9001&{REQUIRED}&startParams=7"),
            10001,
        ),
    ] {
        envelope(&c.expect(app, v31.body(&form), 200).await, code);
    }
    let elsewhere = format!(
        "/dolphinscheduler/projects/78/executors/start-workflow-instance\
         ?workflowDefinitionCode=9001&{REQUIRED}"
    );
    envelope(
        &c.expect(app, call(V33, "POST", &elsewhere), 200).await,
        50003,
    );
    let v33 = call(
        V33,
        "POST",
        "/dolphinscheduler/projects/77/executors/start-workflow-instance",
    )
    .headers(FORM);
    let big = format!(
        "processDefinitionCode=9001&{REQUIRED}&startParams={}",
        "x".repeat(70_000)
    );
    let taken = json!({"name": "dup", "ds_code": 9001, "params_schema": {}});
    c.expect(
        app,
        call(WF, "PUT", "/v1/workflows/ds-dup").body(&taken.to_string()),
        409,
    )
    .await;
    let long_uris = [V31, V33].map(|t| {
        let path = t.replace("{projectCode}", "77");
        format!(
            "{path}?processDefinitionCode=9001&startParams={}",
            "x".repeat(40_000)
        )
    });
    for (template, uri) in [V31, V33].iter().zip(&long_uris) {
        envelope(
            &c.expect(app, call(template, "POST", uri), 200).await,
            10001,
        );
    }
    for door in [v31, v33] {
        envelope(&c.expect(app, door.body(&big), 200).await, 10001);
        let start = format!("processDefinitionCode=9001&{REQUIRED}");
        let calls = [door.body(&start)];
        under_faults_ds(c, app, &["store.workflow_by_ds_code"], &calls).await;
    }
}

/// The door under a backend's faults: each a 200 envelope with code 50014, a retryable
/// one with `Retry-After`.
async fn under_faults_ds(c: &mut Contract, app: &App, points: &[&str], calls: &[Call<'_>]) {
    for (kind, retry) in [(ErrorKind::Retryable, true), (ErrorKind::Permanent, false)] {
        for point in points {
            app.faults.set(point, fault(kind)).expect("point");
        }
        for each in calls {
            let reply = c.expect(app, *each, 200).await;
            assert_eq!(reply.body["code"], 50014, "{}", reply.body);
            assert_eq!(
                reply.header("retry-after").is_some(),
                retry,
                "{}",
                reply.body
            );
        }
        app.faults.clear();
    }
}

/// The audit: a window, its refusals, and its backend's failures.
async fn audit_route(c: &mut Contract, app: &App) {
    const AUDIT: &str = "/v1/audit";
    let now = chrono::Utc::now();
    let window = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
        let q = serde_urlencoded::to_string([("from", from.to_rfc3339()), ("to", to.to_rfc3339())])
            .expect("query");
        format!("/v1/audit?{q}")
    };
    let hour = window(
        now - chrono::Duration::hours(1),
        now + chrono::Duration::minutes(1),
    );
    let audited = c.expect(app, call(AUDIT, "GET", &hour), 200).await;
    assert_eq!(audited.body["invariant"]["holds"], true, "{}", audited.body);
    assert!(audited.body["accepted"].as_u64().is_some_and(|n| n > 0));
    let old = window(now - chrono::Duration::days(30), now);
    let old = c.expect(app, call(AUDIT, "GET", &old), 200).await;
    assert_eq!(old.body["complete"], false, "{}", old.body);
    let backwards = window(now, now - chrono::Duration::hours(1));
    let long = window(now - chrono::Duration::days(40), now);
    for bad in [
        "/v1/audit".to_owned(),
        "/v1/audit?from=yesterday&to=today".to_owned(),
        backwards,
        long,
        format!("{hour}&x=1"),
    ] {
        c.expect(app, call(AUDIT, "GET", &bad), 400).await;
    }
    let calls = [call(AUDIT, "GET", &hour)];
    under_faults(c, app, &["store.audit"], &calls).await;
}

/// A host that keeps no schedules or backfills (schedules: an AWS host without a schedule
/// group): 501 on each route.
async fn unkept_routes(c: &mut Contract) {
    let app = App::without_schedules();
    app.register("orders", true).await;
    let schedule = r#"{"cron": "0 0 3 * * ? *", "params": {"amount": 1}}"#;
    let one = "/v1/workflows/orders/schedules/nightly";
    let dates = r#"{"dates": ["2026-01-01T00:00:00Z"], "params": {"amount": 1}}"#;
    let calls = [
        call("/v1/workflows/{code}/schedules/{id}", "PUT", one).body(schedule),
        call("/v1/workflows/{code}/schedules/{id}", "GET", one),
        call("/v1/workflows/{code}/schedules/{id}", "DELETE", one),
        call(
            "/v1/workflows/{code}/schedules",
            "GET",
            "/v1/workflows/orders/schedules",
        ),
        call(
            "/v1/workflows/{code}/backfills",
            "POST",
            "/v1/workflows/orders/backfills",
        )
        .body(dates),
        call("/v1/backfills/{id}", "GET", "/v1/backfills/b-1"),
        call("/v1/backfills", "GET", "/v1/backfills"),
        call("/v1/schedules", "GET", "/v1/schedules"),
        call(
            "/v1/backfills/{id}/{action}",
            "POST",
            "/v1/backfills/b-1/pause",
        ),
    ];
    for each in calls {
        let reply = c.expect(&app, each, 501).await;
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap_or("")
                .contains("not kept by this host"),
            "{}",
            reply.body
        );
    }
}

/// Every route that needs a caller: 401 without one, 403 without its scope, 429 over the
/// rate limit (the DolphinScheduler door answers the last two in its envelope, HTTP 200).
async fn access_routes(c: &mut Contract, app: &App) {
    let guarded: Vec<(String, String)> = c
        .documented()
        .into_iter()
        .filter(|(_, _, status)| *status == 401)
        .map(|(path, method, _)| (path, method))
        .collect();
    let limited = with_rate_limit(app.router.clone(), 1);
    for (template, method) in guarded {
        let uri = template
            .replace("{code}", "orders")
            .replace("{request_id}", "r-1")
            .replace("{instance_id}", "i-1")
            .replace("{id}", "s-1")
            .replace("{action}", "pause")
            .replace("{projectCode}", "77");
        let method = method.to_ascii_uppercase();
        let body = (method != "GET").then_some("{}");
        let door = template.starts_with("/dolphinscheduler/");
        let (forbidden, limited_status) = if door { (200, 200) } else { (403, 429) };
        let reply = app.call_by(None, &method, &uri, &[], body).await;
        assert_eq!(reply.status.as_u16(), 401, "{method} {uri}: {}", reply.body);
        c.check(&template, &method, &reply);
        let nobody = Caller {
            scopes: Vec::new(),
            ..Caller::all_scopes("default")
        };
        let reply = app.call_by(Some(nobody), &method, &uri, &[], body).await;
        assert_eq!(
            reply.status.as_u16(),
            forbidden,
            "{method} {uri}: {}",
            reply.body
        );
        if door {
            assert_eq!(reply.body["code"], 30002, "{}", reply.body);
        }
        c.check(&template, &method, &reply);
        let tenant = format!("limited-{method}-{uri}");
        for attempt in 0..2 {
            let mut request = axum::http::Request::builder()
                .method(method.as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.unwrap_or("").to_owned()))
                .expect("request");
            request.extensions_mut().insert(Caller::all_scopes(&tenant));
            let reply = send(&limited, request).await;
            if attempt == 1 {
                assert_eq!(
                    reply.status.as_u16(),
                    limited_status,
                    "{method} {uri}: {}",
                    reply.body
                );
                if door {
                    assert_eq!(reply.body["code"], 50014, "{}", reply.body);
                    assert!(reply.header("retry-after").is_some(), "{}", reply.body);
                }
                c.check(&template, &method, &reply);
            }
        }
    }
}

#[tokio::test]
async fn the_document_matches_the_api_in_both_directions() {
    let app = App::new();
    let mut c = Contract::new();
    c.expect(&app, call("/healthz", "GET", "/healthz"), 200)
        .await;
    let doc = app.call("GET", "/openapi.json", &[], None).await;
    assert_eq!(doc.body, c.spec, "the served document is the file");
    c.check("/openapi.json", "GET", &doc);
    workflow_routes(&mut c, &app).await;
    let (request_id, instance_id) = start_routes(&mut c, &app).await;
    batch_routes(&mut c, &app).await;
    read_routes(&mut c, &app, &request_id, &instance_id).await;
    failure_routes(&mut c, &app, &request_id, &instance_id).await;
    run_routes(&mut c, &app, &request_id, &instance_id).await;
    dlq_routes(&mut c, &app).await;
    schedule_routes(&mut c, &app).await;
    backfill_routes(&mut c, &app).await;
    dolphin_routes(&mut c, &app).await;
    unkept_routes(&mut c).await;
    access_routes(&mut c, &app).await;
    let documented = c.documented();
    let never_produced: Vec<_> = documented.difference(&c.covered).collect();
    assert!(
        never_produced.is_empty(),
        "documented but never produced: {never_produced:?}"
    );
}

/// The document's enums of history events and statuses are the code's own, in its order:
/// a new kind of event or status cannot reach a client undocumented.
#[test]
fn the_documents_enums_are_the_codes_own() {
    use flowgate_core::model::{EventKind, InstanceStatus, RunStatus};
    let spec: Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
    let schemas = &spec["components"]["schemas"];
    let listed = |v: &Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|e| e.as_str().expect("a word").to_owned())
            .collect()
    };
    let events: Vec<String> = EventKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(
        listed(&schemas["HistoryEvent"]["properties"]["event"]),
        events
    );
    let statuses: Vec<String> = InstanceStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(
        listed(&schemas["Instance"]["properties"]["status"]),
        statuses
    );
    let runs: Vec<String> = RunStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(listed(&schemas["Run"]["properties"]["status"]), runs);
}
