//! The Lambda handlers fed with real event shapes: API Gateway HTTP API v2 requests with and
//! without authorizers, SQS batches with a poison message, and EventBridge scheduled events.
//! The ports are the embedded ones (the Lambda binaries themselves link only the AWS ones).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use serde_json::{Value, json};

use flowgate_api::TenantRules;
use flowgate_aws::emf::Emf;
use flowgate_core::Flowgate;
use flowgate_core::message::QueueMessage;
use flowgate_core::model::{EventKind, RequestStatus};
use flowgate_core::ports::{Envelope, Liveness, Queue, Store};
use flowgate_core::usecases::{Consumer, Reconciler};
use flowgate_settings::IamTenant;
use flowgate_tests::fixtures::{Captured, Rig, count_events, embedded, record, tenant};
use flowgate_tests::sqs_event::batch;

/// An API Gateway HTTP API (payload v2.0) event, as the Lambda receives it.
fn http_event(method: &str, path: &str, body: Option<&Value>, authorizer: Value) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "authorizer": authorizer,
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390u64
        },
        "body": body.map(Value::to_string),
        "isBase64Encoded": false
    })
    .to_string()
}

fn jwt(claims: Value, scopes: &[&str]) -> Value {
    json!({"jwt": {"claims": claims, "scopes": scopes}})
}

fn iam(user_arn: &str) -> Value {
    json!({"iam": {"accessKey": "AKIA", "accountId": "123456789012", "callerId": "AIDA",
        "principalOrgId": null, "userArn": user_arn, "userId": "AIDA"}})
}

async fn call(app: &axum::Router, event: String) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event).expect("a valid API Gateway event");
    let reply = flowgate_tests::http::send(app, request.map(|b| Body::from(b.to_vec()))).await;
    (reply.status.as_u16(), reply.body)
}

fn rules(from_sub: bool, iam: IamTenant) -> TenantRules {
    TenantRules {
        claim: "tenant".into(),
        from_sub,
        iam,
    }
}

const ALL: &[&str] = &["flowgate/start", "flowgate/admin", "flowgate/dlq"];

#[tokio::test]
async fn the_api_takes_the_tenant_from_the_authorizer_and_fails_closed() {
    let backend = embedded(Duration::from_secs(30), 5);
    let flowgate = Flowgate::new(backend.backend.clone(), backend.backend.clone());
    let app = flowgate_api::app(flowgate.clone(), rules(false, IamTenant::Principal));
    let def = json!({"name": "Orders", "params_schema": {"type": "object"}});
    let put = |auth: Value| http_event("PUT", "/v1/workflows/orders", Some(&def), auth);

    // No authorizer context, or a token that names no tenant: refused, never `default`.
    let (status, body) = call(&app, put(Value::Null)).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (401, Some("urn:flowgate:problem:unauthenticated"))
    );
    let (status, _) = call(&app, put(jwt(json!({"sub": "user-2"}), ALL))).await;
    assert_eq!(
        status, 403,
        "no tenant claim, and no fallback to sub configured"
    );
    let (status, _) = call(&app, put(jwt(json!({"tenant": "a#b"}), ALL))).await;
    assert_eq!(status, 403, "a tenant with the key separator");
    let (status, _) = call(&app, put(jwt(json!({"tenant": "acme"}), &["email"]))).await;
    assert_eq!(status, 403, "no flowgate scope");
    let (status, _) = call(
        &app,
        put(jwt(json!({"tenant": "acme"}), &["flowgate/start"])),
    )
    .await;
    assert_eq!(status, 403, "registering a workflow needs the admin scope");

    // The claim names the tenant; another tenant sees nothing of it.
    let acme = jwt(json!({"sub": "user-1", "tenant": "acme"}), ALL);
    let (status, body) = call(&app, put(acme.clone())).await;
    assert_eq!((status, body["tenant"].as_str()), (201, Some("acme")));
    let start = json!({"params": {"n": 1}});
    let (status, accepted) = call(
        &app,
        http_event(
            "POST",
            "/v1/workflows/orders/instances",
            Some(&start),
            acme.clone(),
        ),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let request_path = format!(
        "/v1/requests/{}",
        accepted["request_id"].as_str().expect("id")
    );
    let other = jwt(json!({"tenant": "globex"}), ALL);
    let (status, _) = call(&app, http_event("GET", &request_path, None, other.clone())).await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, http_event("GET", "/v1/workflows/orders", None, other)).await;
    assert_eq!(status, 404);
    let (status, body) = call(&app, http_event("GET", &request_path, None, acme)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ACCEPTED")));

    // Falling back to `sub` only when configured to.
    let by_sub = flowgate_api::app(flowgate.clone(), rules(true, IamTenant::Principal));
    let (_, body) = call(&by_sub, put(jwt(json!({"sub": "user-2"}), ALL))).await;
    assert_eq!(body["tenant"], "user-2");

    // IAM: a user's ARN; an assumed role's role ARN, whatever session name the caller picked.
    let (_, body) = call(&app, put(iam("arn:aws:iam::123456789012:user/ops"))).await;
    assert_eq!(body["tenant"], "arn:aws:iam::123456789012:user/ops");
    for session in ["alice", "bob"] {
        let arn = format!("arn:aws:sts::123456789012:assumed-role/Deployer/{session}");
        let (_, body) = call(&app, put(iam(&arn))).await;
        assert_eq!(body["tenant"], "arn:aws:iam::123456789012:role/Deployer");
    }
    let by_account = flowgate_api::app(flowgate, rules(false, IamTenant::Account));
    let (_, body) = call(&by_account, put(iam("arn:aws:iam::123456789012:user/ops"))).await;
    assert_eq!(body["tenant"], "123456789012");
}

#[tokio::test]
async fn the_consumer_reports_only_failed_messages_and_dead_letters_poison() {
    let mut rig = Rig::new(Duration::from_millis(100), 3);
    let printed = Captured::default();
    rig.consumer = rig
        .consumer
        .with_metrics(Arc::new(Emf::new(printed.clone())));
    let (store, queue, faults, consumer) = (&rig.store, &rig.queue, &rig.faults, &rig.consumer);
    let t = tenant();
    let good = record(&t, "wf", chrono::Utc::now());
    let poisoned = record(&t, "wf", chrono::Utc::now());
    for r in [&good, &poisoned] {
        store.create_request(r, None).await.expect("record");
    }
    queue
        .send(&QueueMessage::envelope_for(&good))
        .await
        .expect("send");
    queue
        .send(&Envelope {
            tenant: t.clone(),
            request_id: poisoned.request_id.clone(),
            body: "not json".into(),
            traceparent: None,
        })
        .await
        .expect("send");

    // A good message and a poison one: no failure reported, one created, one dead.
    let (_, event) = batch(queue.as_ref(), 2).await;
    let response = flowgate_consumer::handle(consumer, queue.as_ref(), event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let read = |id: String| {
        let (store, t) = (store.clone(), t.clone());
        async move {
            store
                .get_request(&t, &id)
                .await
                .expect("read")
                .expect("exists")
        }
    };
    assert_eq!(
        read(good.request_id.clone()).await.status,
        RequestStatus::Created
    );
    let dead = read(poisoned.request_id.clone()).await;
    assert_eq!(dead.status, RequestStatus::Dead);
    assert!(
        dead.last_error
            .unwrap_or_default()
            .contains("poison message")
    );
    assert!(matches!(
        queue
            .liveness(&t, &poisoned.request_id)
            .await
            .expect("liveness"),
        Liveness::DeadLettered(_)
    ));
    // The function printed its metrics: the creation, its lag, and the poison letter.
    let lines: Vec<Value> = printed
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an EMF line"))
        .collect();
    // A line may carry several metrics of one event (a creation's count and its lag), each
    // with its directive; `outcome` is checked for the metrics counted by outcome.
    let emitted = |name: &str, outcome: Option<&str>| {
        lines.iter().any(|l| {
            let directives = l["_aws"]["CloudWatchMetrics"]
                .as_array()
                .expect("directives");
            directives.iter().any(|d| d["Metrics"][0]["Name"] == name)
                && l.get(name).is_some()
                && outcome.is_none_or(|o| l.get("outcome").and_then(Value::as_str) == Some(o))
        })
    };
    assert!(emitted("created", Some("created")), "{lines:?}");
    assert!(emitted("lag_seconds", None), "{lines:?}");
    assert!(emitted("dead_lettered", Some("poison")), "{lines:?}");
    // The creation's count and its lag are one line.
    assert!(
        lines
            .iter()
            .any(|l| l.get("created").is_some() && l.get("lag_seconds").is_some()),
        "{lines:?}"
    );

    // A failing creation: reported by message id, retried, then dead on the last delivery.
    let failing = record(&t, "wf", chrono::Utc::now());
    store.create_request(&failing, None).await.expect("record");
    queue
        .send(&QueueMessage::envelope_for(&failing))
        .await
        .expect("send");
    faults.apply("consumer.create=1.0").expect("plan");
    for delivery in 1..=3u32 {
        let (deliveries, event) = batch(queue.as_ref(), 1).await;
        assert_eq!(deliveries[0].receive_count, delivery);
        let response = flowgate_consumer::handle(consumer, queue.as_ref(), event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        if delivery < 3 {
            assert_eq!(failed, [deliveries[0].message_id.as_str()]);
        } else {
            assert!(
                failed.is_empty(),
                "the last delivery dead-letters instead of failing"
            );
        }
    }
    let dead = read(failing.request_id.clone()).await;
    assert_eq!((dead.status, dead.attempts), (RequestStatus::Dead, 3));
    assert_eq!(count_events(&dead.history, EventKind::DeliveryFailed), 2);
    assert_eq!(
        dead.history.last().map(|h| h.kind),
        Some(EventKind::DeadLettered)
    );
}

#[tokio::test]
async fn the_reconciler_sweeps_on_a_scheduled_event_and_emits_its_metric() {
    let backend = embedded(Duration::from_secs(30), 5);
    let store: Arc<dyn Store> = backend.backend.clone();
    let queue: Arc<dyn Queue> = backend.backend.clone();
    let t = tenant();
    let stuck = record(&t, "wf", chrono::Utc::now() - chrono::Duration::minutes(5));
    store.create_request(&stuck, None).await.expect("record");
    let printed = Captured::default();
    let reconciler = Reconciler::new(store.clone(), queue.clone(), Duration::from_secs(60))
        .with_metrics(Arc::new(Emf::new(printed.clone())));
    let event = json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-23T12:00:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/flowgate-reconciler"],
        "detail": {}
    });
    let event = serde_json::from_value(event).expect("a valid scheduled event");
    let report = flowgate_reconciler::handle(&reconciler, None, event)
        .await
        .expect("sweep");
    assert_eq!((report.overdue, report.reenqueued), (1, 1), "{report:?}");
    let read = store
        .get_request(&t, &stuck.request_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(count_events(&read.history, EventKind::Reenqueued), 1);
    assert_eq!(
        queue
            .liveness(&t, &stuck.request_id)
            .await
            .expect("liveness"),
        Liveness::Live
    );

    // What the sweep printed is one EMF line per finding, each by outcome.
    let text = printed.text();
    let found: Vec<(String, Value)> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|line| {
            let aws = &line["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(aws["Namespace"], "Flowgate", "{line}");
            assert_eq!(aws["Metrics"][0]["Name"], "reconciler_found", "{line}");
            assert_eq!(aws["Dimensions"], json!([["outcome"]]), "{line}");
            let outcome = line["outcome"].as_str().expect("outcome").to_owned();
            (outcome, line["reconciler_found"].clone())
        })
        .collect();
    for (outcome, value) in [("overdue", 1.0), ("reenqueued", 1.0), ("failed", 0.0)] {
        assert!(
            found.contains(&(outcome.to_owned(), json!(value))),
            "{outcome}: {text}"
        );
    }
}

/// The API function's router, called with API Gateway events whose JWT names the tenant.
struct LambdaDoor(axum::Router);

impl flowgate_tests::isolation::Door for LambdaDoor {
    async fn call(
        &self,
        tenant: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut event: Value = serde_json::from_str(&http_event(
            method,
            path,
            body.as_ref(),
            jwt(json!({"tenant": tenant}), ALL),
        ))
        .expect("event");
        event["rawQueryString"] = json!(query);
        for (k, v) in headers {
            event["headers"][*k] = json!(v);
        }
        call(&self.0, event.to_string()).await
    }
}

#[tokio::test]
async fn a_second_tenant_can_never_reach_the_first_ones_data_through_the_function() {
    let rig = Rig::new(Duration::from_millis(200), 5);
    let flowgate = Flowgate::new(rig.store.clone(), rig.queue.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer = Arc::new(Consumer::new(
        rig.store.clone(),
        rig.queue.clone(),
        flowgate_tests::fixtures::consumer_config(5, Duration::from_millis(200)),
    ));
    tokio::spawn(consumer.run(stopped));
    let door = LambdaDoor(flowgate_api::app(
        flowgate,
        rules(false, IamTenant::Principal),
    ));
    flowgate_tests::isolation::tenants_stay_apart(&door).await;
    let _ = stop.send(true);
}

/// The reconciler function's backfill runner is built like every host's use cases: the
/// dates it starts are counted (`accepted` and `fired`, by workflow). Before, it had no
/// metrics sink, and a backfill's dates on AWS were never counted.
#[tokio::test]
async fn the_reconcilers_backfill_dates_are_counted_like_any_start() {
    let backend = embedded(Duration::from_secs(30), 5);
    let store: Arc<dyn Store> = backend.backend.clone();
    let queue: Arc<dyn Queue> = backend.backend.clone();
    let backfills: Arc<dyn flowgate_core::ports::Backfills> = backend.backend.clone();
    let printed = Captured::default();
    let settings = flowgate_settings::Settings::defaults();
    let (_reconciler, runner) = flowgate_reconciler::use_cases(
        &settings,
        flowgate_core::HostPorts {
            store: store.clone(),
            queue: queue.clone(),
            schedules: None,
            backfills: Some(backfills.clone()),
            dispatcher: None,
            metrics: Some(Arc::new(Emf::new(printed.clone()))),
        },
    );
    let t = tenant();
    let app = Flowgate::new(store.clone(), queue.clone()).with_backfills(backfills);
    let def = json!({"name": "nightly", "params_schema": {"type": "object"}});
    app.put_workflow(&t, "nightly", serde_json::from_value(def).expect("body"))
        .await
        .expect("workflow");
    let body = json!({"dates": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]});
    app.start_backfill(
        &t,
        "nightly",
        serde_json::from_value(body).expect("body"),
        None,
    )
    .await
    .expect("backfill");
    runner.step(Duration::from_secs(1)).await.expect("step");
    let text = printed.text();
    let counted = |metric: &str, outcome: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["workflow"] == "nightly" && l["outcome"] == outcome)
            .filter_map(|l| l[metric].as_f64())
            .sum::<f64>()
    };
    assert_eq!(counted("accepted", "accepted"), 2.0, "{text}");
    assert_eq!(counted("fired", "started"), 2.0, "{text}");
}

/// A target reports through the function on a route the gateway does not authorize (the
/// stack's callback route): the instance's own callback token is the credential, and
/// another instance's token, or none, is refused.
#[tokio::test]
async fn a_callback_reaches_the_function_without_an_authorizer() {
    let mut local = flowgate_tests::http::App::new();
    let callbacks = flowgate_core::callback::Callbacks::new(&"k".repeat(48), "https://api.test")
        .expect("a key");
    local.flowgate = local.flowgate.clone().with_callbacks(callbacks.clone());
    local.router = flowgate_core::http::router(local.flowgate.clone());
    local.register_as(Some("acme"), "orders", true).await;
    let _consumer = local.start_consumer();
    let started = local
        .call_as(
            Some("acme"),
            "POST",
            "/v1/workflows/orders/instances",
            &[("prefer", "wait=10")],
            Some(r#"{"params": {"amount": 1}}"#),
        )
        .await;
    assert_eq!(started.status.as_u16(), 201, "{}", started.body);
    let id = started.body["instance_id"].as_str().expect("an id");
    let app = flowgate_api::app(local.flowgate.clone(), rules(false, IamTenant::Principal));
    let report = |token: &str| {
        let mut event: Value = serde_json::from_str(&http_event(
            "POST",
            &format!("/v1/instances/{id}/status"),
            Some(&json!({"status": "SUCCEEDED"})),
            Value::Null,
        ))
        .expect("an event");
        event["routeKey"] = json!("POST /v1/instances/{instance_id}/status");
        if !token.is_empty() {
            event["headers"]["authorization"] = json!(format!("Bearer {token}"));
        }
        event.to_string()
    };
    let (status, _) = call(&app, report("")).await;
    assert_eq!(status, 401, "no token");
    let other = callbacks.of("acme", "01a23766-cc11-772e-9b8e-6b407a98f869");
    let (status, _) = call(&app, report(&other.token)).await;
    assert_eq!(status, 401, "another instance's token");
    let mine = callbacks.of("acme", id);
    let (status, body) = call(&app, report(&mine.token)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("SUCCEEDED")),
        "{body}"
    );
}
