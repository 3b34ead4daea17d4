//! Keeps the OpenAPI document true: every route and status code it documents is produced
//! by a scenario here, and every reply's status, content type and body match the document.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use flowgate_core::ErrorKind;
use flowgate_core::faults::Fault;
use flowgate_core::http::OPENAPI;
use flowgate_tests::http::{App, Reply};

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
        let response = &self.spec["paths"][template][&method]["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which is not documented: {}",
            reply.body
        );
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

    /// Sends a request and checks the reply.
    async fn exercise(
        &mut self,
        app: &App,
        template: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let reply = app.call(method, uri, headers, body).await;
        self.check(template, method, &reply);
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

fn fault(kind: ErrorKind) -> Fault {
    Fault {
        rate: 1.0,
        kind,
        after: false,
    }
}

#[tokio::test]
async fn the_document_matches_the_api_in_both_directions() {
    let app = App::new();
    let mut c = Contract::new();
    let wf = "/v1/workflows/{code}";
    let inst = "/v1/workflows/{code}/instances";
    let def = json!({"name": "Orders", "params_schema": {"type": "object", "required": ["amount"],
        "properties": {"amount": {"type": "integer", "minimum": 1}}}})
    .to_string();
    let start =
        r#"{"params": {"amount": 2}, "priority": "LOW", "schedule_time": "2031-01-01T00:00:00Z"}"#;

    c.exercise(&app, "/healthz", "GET", "/healthz", &[], None)
        .await;
    let doc = app.call("GET", "/openapi.json", &[], None).await;
    assert_eq!(doc.body, c.spec, "the served document is the file");
    c.check("/openapi.json", "GET", &doc);

    c.exercise(&app, wf, "PUT", "/v1/workflows/orders", &[], Some(&def))
        .await;
    c.exercise(&app, wf, "PUT", "/v1/workflows/orders", &[], Some(&def))
        .await;
    c.exercise(&app, wf, "PUT", "/v1/workflows/orders", &[], Some("{"))
        .await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70_000));
    c.exercise(&app, wf, "PUT", "/v1/workflows/orders", &[], Some(&big))
        .await;
    c.exercise(
        &app,
        wf,
        "PUT",
        "/v1/workflows/orders",
        &[("content-type", "text/plain")],
        None,
    )
    .await;
    c.exercise(&app, wf, "GET", "/v1/workflows/orders", &[], None)
        .await;
    c.exercise(&app, wf, "GET", "/v1/workflows/no-such", &[], None)
        .await;
    c.exercise(&app, wf, "GET", "/v1/workflows/bad%20code", &[], None)
        .await;

    let accepted = app
        .call(
            "POST",
            "/v1/workflows/orders/instances",
            &[("idempotency-key", "c-1")],
            Some(start),
        )
        .await;
    c.check(inst, "POST", &accepted);
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[("idempotency-key", "c-1")],
        Some(start),
    )
    .await;
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[("idempotency-key", "c-1")],
        Some(r#"{"params": {"amount": 3}}"#),
    )
    .await;
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[],
        Some(r#"{"params": {"amount": 0}}"#),
    )
    .await;
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/none/instances",
        &[],
        Some(start),
    )
    .await;
    let big = format!("{{\"params\": {{\"pad\": \"{}\"}}}}", "x".repeat(70_000));
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[],
        Some(&big),
    )
    .await;
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[("content-type", "text/plain")],
        None,
    )
    .await;
    let request_id = accepted.body["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    let instance_id = accepted.body["instance_id"]
        .as_str()
        .expect("instance_id")
        .to_owned();
    c.exercise(
        &app,
        "/v1/instances/{instance_id}",
        "GET",
        &format!("/v1/instances/{instance_id}"),
        &[],
        None,
    )
    .await;

    let _consumer = app.start_consumer();
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[("prefer", "wait=10")],
        Some(start),
    )
    .await;
    app.settled(&request_id).await;
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/orders/instances",
        &[("idempotency-key", "c-1")],
        Some(start),
    )
    .await;
    c.exercise(
        &app,
        "/v1/requests/{request_id}",
        "GET",
        &format!("/v1/requests/{request_id}"),
        &[],
        None,
    )
    .await;
    c.exercise(
        &app,
        "/v1/requests/{request_id}",
        "GET",
        "/v1/requests/nope",
        &[],
        None,
    )
    .await;
    c.exercise(
        &app,
        "/v1/instances/{instance_id}",
        "GET",
        &format!("/v1/instances/{instance_id}"),
        &[],
        None,
    )
    .await;
    c.exercise(
        &app,
        inst,
        "GET",
        "/v1/workflows/orders/instances?limit=1",
        &[],
        None,
    )
    .await;
    c.exercise(
        &app,
        inst,
        "GET",
        "/v1/workflows/orders/instances?limit=500",
        &[],
        None,
    )
    .await;
    c.exercise(&app, inst, "GET", "/v1/workflows/none/instances", &[], None)
        .await;

    let def_off = def.replace("\"Orders\"", "\"Orders\", \"online\": false");
    app.call("PUT", "/v1/workflows/offline", &[], Some(&def_off))
        .await;
    c.exercise(
        &app,
        inst,
        "POST",
        "/v1/workflows/offline/instances",
        &[],
        Some(start),
    )
    .await;

    // 503 and 500: each backend call failing retryably, then permanently.
    for kind in [ErrorKind::Retryable, ErrorKind::Permanent] {
        for point in [
            "store.get_workflow",
            "store.put_workflow",
            "store.get",
            "store.get_instance",
        ] {
            app.faults.set(point, fault(kind)).expect("point");
        }
        c.exercise(&app, "/healthz", "GET", "/healthz", &[], None)
            .await;
        c.exercise(&app, wf, "PUT", "/v1/workflows/orders", &[], Some(&def))
            .await;
        c.exercise(&app, wf, "GET", "/v1/workflows/orders", &[], None)
            .await;
        c.exercise(
            &app,
            inst,
            "POST",
            "/v1/workflows/orders/instances",
            &[],
            Some(start),
        )
        .await;
        c.exercise(
            &app,
            inst,
            "GET",
            "/v1/workflows/orders/instances",
            &[],
            None,
        )
        .await;
        c.exercise(
            &app,
            "/v1/requests/{request_id}",
            "GET",
            &format!("/v1/requests/{request_id}"),
            &[],
            None,
        )
        .await;
        c.exercise(
            &app,
            "/v1/instances/{instance_id}",
            "GET",
            &format!("/v1/instances/{instance_id}"),
            &[],
            None,
        )
        .await;
        app.faults.clear();
    }

    // The dead-letter routes: a listing, a dry run, a replay, and their bad inputs.
    let dlq = "/v1/dlq";
    let replay = "/v1/dlq/replay";
    c.exercise(
        &app,
        dlq,
        "GET",
        "/v1/dlq?limit=5&error=permanent",
        &[],
        None,
    )
    .await;
    c.exercise(&app, dlq, "GET", "/v1/dlq?older_than=soon", &[], None)
        .await;
    let dry = r#"{"workflow": "orders", "dry_run": true, "max": 10, "older_than": "1s"}"#;
    c.exercise(&app, replay, "POST", replay, &[], Some(dry))
        .await;
    c.exercise(&app, replay, "POST", replay, &[], Some(r#"{"max": 0}"#))
        .await;
    c.exercise(&app, replay, "POST", replay, &[], Some(r#"{"rate": -1}"#))
        .await;
    c.exercise(
        &app,
        replay,
        "POST",
        replay,
        &[("content-type", "text/plain")],
        None,
    )
    .await;
    let huge = format!(r#"{{"workflow": "{}"}}"#, "x".repeat(70_000));
    c.exercise(&app, replay, "POST", replay, &[], Some(&huge))
        .await;
    for kind in [ErrorKind::Retryable, ErrorKind::Permanent] {
        app.faults.set("dlq.peek", fault(kind)).expect("point");
        app.faults.set("dlq.claim", fault(kind)).expect("point");
        c.exercise(&app, dlq, "GET", dlq, &[], None).await;
        c.exercise(&app, replay, "POST", replay, &[], Some("{}"))
            .await;
        app.faults.clear();
    }

    let documented = c.documented();
    let never_produced: Vec<_> = documented.difference(&c.covered).collect();
    assert!(
        never_produced.is_empty(),
        "documented but never produced: {never_produced:?}"
    );
}
