//! The DolphinScheduler door on the embedded host, with the request shapes that
//! DolphinScheduler's UI (a form, `qs.stringify`) and its docs (a query string) send.

use serde_json::{Value, json};

use flowgate_tests::http::{App, Reply};

const V31: &str = "/dolphinscheduler/projects/7001/executors/start-process-instance";
const V33: &str = "/dolphinscheduler/projects/7001/executors/start-workflow-instance";
const FORM: &[(&str, &str)] = &[("content-type", "application/x-www-form-urlencoded")];

/// A workflow `code` with DolphinScheduler code `ds` in project 7001, for `tenant`.
async fn definition(app: &App, tenant: Option<&str>, code: &str, ds: i64) {
    let body = json!({"name": code, "ds_code": ds, "ds_project_code": 7001,
        "params_schema": {"type": "object", "properties": {"dt": {"type": "string"}}}});
    let put = app.put_workflow_as(tenant, code, &body).await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.body["ds_code"], ds);
}

/// The parameters DolphinScheduler requires on every call.
const REQUIRED: &str = "failureStrategy=END&warningType=NONE&scheduleTime=";

/// The form DolphinScheduler 3.1's UI posts from "Run" (every field it sends).
fn ui_form(ds: i64) -> String {
    serde_urlencoded::to_string([
        ("processDefinitionCode", ds.to_string().as_str()),
        ("failureStrategy", "CONTINUE"),
        ("warningType", "NONE"),
        ("warningGroupId", "0"),
        ("execType", "START_PROCESS"),
        ("startNodeList", ""),
        ("taskDependType", "TASK_POST"),
        ("complementDependentMode", "OFF_MODE"),
        ("runMode", "RUN_MODE_SERIAL"),
        ("processInstancePriority", "HIGH"),
        ("workerGroup", "default"),
        ("environmentCode", "-1"),
        ("startParams", r#"{"dt":"2024-01-01"}"#),
        ("expectedParallelismNumber", ""),
        ("dryRun", "0"),
        ("testFlag", "0"),
        ("tenantCode", "default"),
        ("scheduleTime", ""),
    ])
    .expect("form")
}

fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (
            &reply.body["code"],
            &reply.body["success"],
            &reply.body["failed"]
        ),
        (&json!(0), &json!(true), &json!(false)),
        "{}",
        reply.body
    );
    reply.body["data"]
        .as_array()
        .expect("data lists request ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect()
}

/// A failure as DolphinScheduler answers it: HTTP 200, its code, and a message with no
/// JSON pointer in it.
fn failed(reply: &Reply, code: i64) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let msg = reply.body["msg"].as_str().unwrap_or("");
    assert!(!msg.contains(" /"), "{msg}");
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert_eq!(
        (
            &reply.body["success"],
            &reply.body["failed"],
            &reply.body["data"]
        ),
        (&json!(false), &json!(true), &Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ui_start_creates_one_instance_and_keeps_every_parameter() {
    let app = App::new();
    let _consumer = app.start_consumer();
    definition(&app, None, "daily-etl", 8_123_456_789).await;
    let reply = app
        .call("POST", V31, FORM, Some(&ui_form(8_123_456_789)))
        .await;
    let started = ids(&reply);
    assert_eq!(started.len(), 1);
    let view = app.settled(&started[0]).await;
    assert_eq!(view["status"], "CREATED", "{view}");
    assert_eq!(view["workflow"], "daily-etl");
    assert_eq!(view["priority"], "HIGH");
    assert_eq!(view["params"], json!({"dt": "2024-01-01"}));
    for (name, value) in [
        ("failureStrategy", "CONTINUE"),
        ("warningType", "NONE"),
        ("workerGroup", "default"),
        ("tenantCode", "default"),
        ("testFlag", "0"),
        ("dryRun", "0"),
        ("environmentCode", "-1"),
    ] {
        assert_eq!(view["options"][name], value, "{name} kept: {view}");
    }
    assert!(view["options"].get("startParams").is_none());
}

#[tokio::test]
async fn the_3_3_query_string_form_and_an_idempotency_key_are_honoured() {
    let app = App::new();
    definition(&app, None, "report", 42).await;
    let uri = format!("{V33}?workflowDefinitionCode=42&workflowInstancePriority=LOWEST&{REQUIRED}");
    let key = &[("idempotency-key", "ds-run-1")];
    let first = ids(&app.call("POST", &uri, key, None).await);
    let again = ids(&app.call("POST", &uri, key, None).await);
    assert_eq!(first, again, "a retried call is the same request");
    let other = ids(&app.call("POST", &uri, &[], None).await);
    assert_ne!(
        first, other,
        "without a key, each call is a new start, as in DolphinScheduler"
    );
    let view = app
        .call("GET", &format!("/v1/requests/{}", first[0]), &[], None)
        .await;
    assert_eq!(view.body["priority"], "LOWEST");
}

/// The 3.3 UI's `startParams`, an array of `{prop, direct, type, value}` prefilled from the
/// workflow's parameters, and DolphinScheduler's string values typed by the schema.
#[tokio::test]
async fn startparams_arrays_and_string_values_are_read_as_dolphinscheduler_does() {
    let app = App::new();
    let body = json!({"name": "typed", "ds_code": 9, "params_schema": {"type": "object",
        "required": ["n", "ratio", "full", "dt"],
        "properties": {"n": {"type": "integer", "minimum": 1}, "ratio": {"type": "number"},
            "full": {"type": "boolean"}, "dt": {"type": "string"}}}});
    assert_eq!(app.put_workflow_as(None, "typed", &body).await.status, 201);
    let array = r#"[{"prop":"n","direct":"IN","type":"INTEGER","value":"3"},
        {"prop":"ratio","direct":"IN","type":"DOUBLE","value":"0.5"},
        {"prop":"full","direct":"IN","type":"BOOLEAN","value":"true"},
        {"prop":"dt","direct":"IN","type":"VARCHAR","value":"20240101"}]"#;
    let form = serde_urlencoded::to_string([
        ("workflowDefinitionCode", "9"),
        ("failureStrategy", "CONTINUE"),
        ("warningType", "NONE"),
        ("scheduleTime", ""),
        ("startParams", array),
    ])
    .expect("form");
    let started = ids(&app.call("POST", V33, FORM, Some(&form)).await);
    let view = app
        .call("GET", &format!("/v1/requests/{}", started[0]), &[], None)
        .await;
    assert_eq!(
        view.body["params"],
        json!({"n": 3, "ratio": 0.5, "full": true, "dt": "20240101"}),
        "{}",
        view.body
    );
    // The object form with strings, as 3.1 and 3.2 send it; a value the schema refuses
    // after typing is a start error naming it.
    let object = format!(
        "processDefinitionCode=9&{REQUIRED}&startParams={}",
        urlencode(r#"{"n":"0","ratio":"1","full":"false","dt":"x"}"#)
    );
    let refused = app.call("POST", V31, FORM, Some(&object)).await;
    failed(&refused, 50014);
    assert!(
        refused.body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("startParams.n")),
        "{}",
        refused.body
    );
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)])
        .expect("encode")
        .trim_start_matches("v=")
        .to_owned()
}

#[tokio::test]
async fn unknown_offline_other_project_and_other_tenant_answer_dolphinscheduler_codes() {
    let app = App::new();
    definition(&app, None, "report", 42).await;
    definition(&app, Some("other"), "theirs", 43).await;
    let off = json!({"name": "off", "online": false, "ds_code": 44, "params_schema": {}});
    app.call("PUT", "/v1/workflows/off", &[], Some(&off.to_string()))
        .await;
    let start = |code: i64| format!("processDefinitionCode={code}&{REQUIRED}");
    failed(&app.call("POST", V31, FORM, Some(&start(41))).await, 50003);
    failed(&app.call("POST", V31, FORM, Some(&start(43))).await, 50003);
    let elsewhere = "/dolphinscheduler/projects/7002/executors/start-process-instance";
    failed(
        &app.call("POST", elsewhere, FORM, Some(&start(42))).await,
        50003,
    );
    let offline = app.call("POST", elsewhere, FORM, Some(&start(44))).await;
    failed(&offline, 50004);
    let offline_complement = complement(
        "processDefinitionCode=44&failureStrategy=END&warningType=NONE",
        r#"{"complementScheduleDateList":"2024-01-01 00:00:00"}"#,
    );
    let refused = app.call("POST", V31, FORM, Some(&offline_complement)).await;
    failed(&refused, 50004);
    let bad = app
        .call(
            "POST",
            V31,
            FORM,
            Some(&format!("{}&startParams=%5B1%5D", start(42))),
        )
        .await;
    failed(&bad, 10001);
    assert!(
        bad.body["msg"]
            .as_str()
            .unwrap_or("")
            .contains("startParams"),
        "{}",
        bad.body
    );
    let refused = app
        .call(
            "POST",
            V31,
            FORM,
            Some(&format!(r#"{}&startParams={{"dt":5}}"#, start(42))),
        )
        .await;
    failed(&refused, 50014);
    // What DolphinScheduler's binding refuses: a missing required parameter, an unknown
    // enum value, a number that is not one. Never a silent start.
    for call in [
        "processDefinitionCode=42".to_owned(),
        "processDefinitionCode=42&warningType=NONE&scheduleTime=".to_owned(),
        "processDefinitionCode=42&failureStrategy=END&scheduleTime=".to_owned(),
        "processDefinitionCode=42&failureStrategy=END&warningType=NONE".to_owned(),
        format!(
            "{}&failureStrategy=SOMETIMES",
            "processDefinitionCode=42&warningType=NONE&scheduleTime="
        ),
        format!("{}&runMode=RUN_MODE_SOMETIMES", start(42)),
        format!("{}&warningGroupId=none", start(42)),
        format!("{}&dryRun=true", start(42)),
    ] {
        failed(&app.call("POST", V31, FORM, Some(&call)).await, 50014);
    }
    // A JSON body is not read (DolphinScheduler reads parameters only): this one names no
    // definition, so nothing starts.
    let json = app
        .call("POST", V31, &[], Some(r#"{"processDefinitionCode": 42}"#))
        .await;
    failed(&json, 50014);
    // With the parameters in the query, a JSON body beside them is ignored.
    let uri = format!("{V31}?{}", start(42));
    let ignored = app
        .call("POST", &uri, &[], Some(r#"{"startParams": 1}"#))
        .await;
    assert_eq!(ids(&ignored).len(), 1);
    // A second workflow cannot take a code another carries.
    let taken = json!({"name": "dup", "ds_code": 42, "params_schema": {}});
    app.call("PUT", "/v1/workflows/dup", &[], Some(&taken.to_string()))
        .await
        .assert_problem(409, "conflict");
}

/// A complement over a range, by the workflow's schedule: one instance per date, newest
/// first by default, run in parallel as asked. Sent again, it runs every date again, each
/// once for that call, as DolphinScheduler re-runs past dates; retried with the same
/// `Idempotency-Key`, it is the same call and starts nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complement_runs_each_date_once_per_call() {
    let app = App::new();
    let _consumer = app.start_consumer();
    definition(&app, None, "daily-etl", 77).await;
    // A paused schedule does not expand a complement; the one that is not paused does,
    // and its own start does not limit it.
    for (id, cron, paused) in [
        ("nightly", "0 0 2 * * ? *", false),
        ("old", "0 0 5 * * ? *", true),
    ] {
        let schedule = json!({"cron": cron, "paused": paused, "start": "2030-01-01T00:00:00Z"});
        let put = app
            .call(
                "PUT",
                &format!("/v1/workflows/daily-etl/schedules/{id}"),
                &[],
                Some(&schedule.to_string()),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.body);
    }
    let range = complement(
        &format!(
            "processDefinitionCode=77&runMode=RUN_MODE_PARALLEL&expectedParallelismNumber=3&{}",
            "failureStrategy=END&warningType=NONE"
        ),
        r#"{"complementStartDate":"2024-01-01 00:00:00","complementEndDate":"2024-01-05 00:00:00"}"#,
    );
    let reply = app.call("POST", V31, FORM, Some(&range)).await;
    let dates = ids(&reply);
    assert_eq!(
        dates.len(),
        4,
        "Jan 1-4 at 02:00; Jan 5 02:00 is past the end"
    );
    assert!(
        reply.body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("4 dates")),
        "{}",
        reply.body
    );
    let done = app.run_backfill(backfill_of(&reply)).await;
    assert_eq!(
        (
            done["state"].as_str(),
            done["created"].as_u64(),
            done["skipped"].as_u64()
        ),
        (Some("done"), Some(4), Some(0)),
        "{done}"
    );
    let newest = app.settled(&dates[0]).await;
    assert_eq!(newest["logical_date"], "2024-01-04T02:00:00Z", "{newest}");
    assert_eq!(newest["options"]["runMode"], "RUN_MODE_PARALLEL");

    // Sent again: every date again, under new requests, each once.
    let again = app.call("POST", V31, FORM, Some(&range)).await;
    let rerun = ids(&again);
    assert_eq!(rerun.len(), 4);
    assert!(rerun.iter().all(|id| !dates.contains(id)), "new requests");
    let second = app.run_backfill(backfill_of(&again)).await;
    assert_eq!(second["created"].as_u64(), Some(4), "{second}");

    // Retried with a key: one backfill, whatever the number of retries.
    let key = &[
        ("idempotency-key", "rerun-jan"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let keyed = app.call("POST", V31, key, Some(&range)).await;
    let retried = app.call("POST", V31, key, Some(&range)).await;
    assert_eq!(ids(&keyed), ids(&retried));
    assert_eq!(backfill_of(&keyed), backfill_of(&retried));
    assert!(
        retried.body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("started nothing more")),
        "{}",
        retried.body
    );
    let third = app.run_backfill(backfill_of(&keyed)).await;
    assert_eq!(third["created"].as_u64(), Some(4), "{third}");
    // The same key for another complement is refused, and starts nothing.
    let other = complement(
        "processDefinitionCode=77&failureStrategy=END&warningType=NONE",
        r#"{"complementScheduleDateList":"2024-02-01 00:00:00"}"#,
    );
    failed(&app.call("POST", V31, key, Some(&other)).await, 50014);
    let listed = app
        .call(
            "GET",
            "/v1/workflows/daily-etl/instances?limit=100",
            &[],
            None,
        )
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(12));
}

/// A complement needs the `start` scope, as in DolphinScheduler; a caller without it is
/// told so in the envelope (30002), and a caller with no credentials gets a 401.
#[tokio::test]
async fn a_complement_needs_only_the_start_scope() {
    let app = App::new();
    definition(&app, None, "report", 42).await;
    let starter = flowgate_core::auth::Caller {
        scopes: vec![flowgate_core::auth::Scope::Start],
        ..flowgate_core::auth::Caller::all_scopes("default")
    };
    let range = complement(
        "processDefinitionCode=42&failureStrategy=END&warningType=NONE",
        r#"{"complementScheduleDateList":"2024-01-01 00:00:00"}"#,
    );
    let reply = app
        .call_by(Some(starter), "POST", V31, FORM, Some(&range))
        .await;
    assert_eq!(ids(&reply).len(), 1);
    let reader = flowgate_core::auth::Caller {
        scopes: vec![flowgate_core::auth::Scope::Dlq],
        ..flowgate_core::auth::Caller::all_scopes("default")
    };
    let forbidden = app
        .call_by(Some(reader), "POST", V31, FORM, Some(&range))
        .await;
    failed(&forbidden, 30002);
    app.call_by(None, "POST", V31, FORM, Some(&range))
        .await
        .assert_problem(401, "unauthenticated");
}

/// Without a schedule, a range is expanded as DolphinScheduler does: daily at midnight. A
/// range whose ends are equal is that one instant; one with no date inside is a failure in
/// the envelope.
#[tokio::test]
async fn complement_ranges_expand_as_dolphinscheduler_expands_them() {
    let app = App::new();
    definition(&app, None, "adhoc", 5).await;
    let call = |schedule_time: &str| {
        complement(
            "processDefinitionCode=5&executionOrder=ASC_ORDER&failureStrategy=END&warningType=NONE",
            schedule_time,
        )
    };
    let reply = app
        .call(
            "POST",
            V33,
            FORM,
            Some(&call(
                r#"{"complementStartDate":"2024-03-01 00:00:00","complementEndDate":"2024-03-03 00:00:00"}"#,
            )),
        )
        .await;
    let dates = ids(&reply);
    assert_eq!(dates.len(), 3, "inclusive at both ends");
    let id = backfill_of(&reply);
    let view = app
        .call("GET", &format!("/v1/backfills/{id}"), &[], None)
        .await;
    assert_eq!(view.body["total"], 3, "{}", view.body);
    let one = app
        .call(
            "POST",
            V33,
            FORM,
            Some(&call(
                r#"{"complementStartDate":"2024-03-01 10:30:00","complementEndDate":"2024-03-01 10:30:00"}"#,
            )),
        )
        .await;
    let one_id = ids(&one);
    assert_eq!(one_id.len(), 1);
    let empty = app
        .call(
            "POST",
            V33,
            FORM,
            Some(&call(
                r#"{"complementStartDate":"2024-03-01 10:00:00","complementEndDate":"2024-03-01 11:00:00"}"#,
            )),
        )
        .await;
    failed(&empty, 10001);
    assert!(
        empty.body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("scheduleTime")),
        "{}",
        empty.body
    );
    let backwards = app
        .call(
            "POST",
            V33,
            FORM,
            Some(&call(
                r#"{"complementStartDate":"2024-03-02 00:00:00","complementEndDate":"2024-03-01 00:00:00"}"#,
            )),
        )
        .await;
    failed(&backwards, 10001);
    assert!(
        backwards.body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("complementEndDate")),
        "{}",
        backwards.body
    );
}

/// `dryRun=1` creates the instance and never hands it to the target, and says why in its
/// history; `testFlag` reaches the target with the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_creates_and_never_hands_off_and_the_test_flag_reaches_the_target() {
    let rx = flowgate_tests::receiver::Receiver::start("ds-secret").await;
    let app = App::new();
    let _consumer = app.start_consumer();
    let body = json!({"name": "hooked", "ds_code": 88, "params_schema": {"type": "object"},
        "target": {"type": "webhook", "url": rx.url, "secret": "ds-secret"}});
    assert_eq!(app.put_workflow_as(None, "hooked", &body).await.status, 201);
    let dry = format!("processDefinitionCode=88&{REQUIRED}&dryRun=1");
    let started = ids(&app.call("POST", V31, FORM, Some(&dry)).await);
    let view = app.settled(&started[0]).await;
    assert_eq!(view["status"], "CREATED", "{view}");
    assert!(view.get("dispatch").is_none(), "no hand-off owed: {view}");
    let history = view["history"].to_string();
    assert!(history.contains("a dry run"), "{history}");
    let test = format!("processDefinitionCode=88&{REQUIRED}&testFlag=1");
    let tested = ids(&app.call("POST", V31, FORM, Some(&test)).await);
    let view = app.settled(&tested[0]).await;
    let settled = app
        .until_status(
            "default",
            &tested[0],
            flowgate_core::model::RequestStatus::Dispatched,
        )
        .await;
    assert_eq!(view["options"]["testFlag"], "1");
    let delivered = rx.delivered();
    assert_eq!(delivered.len(), 1, "the dry run was never handed off");
    assert_eq!(delivered[0].instance_id, settled.instance_id);
    assert_eq!(
        delivered[0].body["options"]["testFlag"], "1",
        "{:?}",
        delivered[0].body
    );
}

fn complement(rest: &str, schedule_time: &str) -> String {
    let tail = serde_urlencoded::to_string([
        ("execType", "COMPLEMENT_DATA"),
        ("scheduleTime", schedule_time),
    ])
    .expect("form");
    format!("{rest}&{tail}")
}

/// The backfill a complement became, from its `Location`.
fn backfill_of(reply: &Reply) -> &str {
    reply
        .header("location")
        .and_then(|l| l.strip_prefix("/v1/backfills/"))
        .expect("a complement answers with its backfill's location")
}
