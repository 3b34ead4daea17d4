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

fn failed(reply: &Reply, status: u16, code: i64) {
    assert_eq!(reply.status, status, "{}", reply.body);
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
    let uri = format!("{V33}?workflowDefinitionCode=42&workflowInstancePriority=LOWEST");
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

#[tokio::test]
async fn unknown_offline_other_project_and_other_tenant_answer_dolphinscheduler_codes() {
    let app = App::new();
    definition(&app, None, "report", 42).await;
    definition(&app, Some("other"), "theirs", 43).await;
    let off = json!({"name": "off", "online": false, "ds_code": 44, "params_schema": {}});
    app.call("PUT", "/v1/workflows/off", &[], Some(&off.to_string()))
        .await;
    let start = |code: i64| format!("processDefinitionCode={code}");
    failed(
        &app.call("POST", V31, FORM, Some(&start(41))).await,
        200,
        50003,
    );
    failed(
        &app.call("POST", V31, FORM, Some(&start(43))).await,
        200,
        50003,
    );
    let elsewhere = "/dolphinscheduler/projects/7002/executors/start-process-instance";
    failed(
        &app.call("POST", elsewhere, FORM, Some(&start(42))).await,
        200,
        50003,
    );
    let offline = app.call("POST", elsewhere, FORM, Some(&start(44))).await;
    failed(&offline, 200, 50004);
    let offline_complement = complement(
        &start(44),
        r#"{"complementScheduleDateList":"2024-01-01 00:00:00"}"#,
    );
    let refused = app.call("POST", V31, FORM, Some(&offline_complement)).await;
    failed(&refused, 200, 50004);
    let bad = app
        .call(
            "POST",
            V31,
            FORM,
            Some("processDefinitionCode=42&startParams=%5B1%5D"),
        )
        .await;
    failed(&bad, 400, 10001);
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
            Some(r#"processDefinitionCode=42&startParams={"dt":5}"#),
        )
        .await;
    failed(&refused, 200, 50014);
    let json = app
        .call("POST", V31, &[], Some(r#"{"processDefinitionCode": 42}"#))
        .await;
    failed(&json, 400, 10001);
    // A second workflow cannot take a code another carries.
    let taken = json!({"name": "dup", "ds_code": 42, "params_schema": {}});
    app.call("PUT", "/v1/workflows/dup", &[], Some(&taken.to_string()))
        .await
        .assert_problem(409, "conflict");
}

/// A complement over a range, by the workflow's schedule: one instance per date, newest
/// first by default, run in parallel as asked, the dates a schedule already fired skipped,
/// and the same complement sent twice starts nothing twice (DolphinScheduler #17286).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complement_is_a_backfill_that_never_duplicates_an_instance() {
    let app = App::new();
    let _consumer = app.start_consumer();
    definition(&app, None, "daily-etl", 77).await;
    let schedule = json!({"cron": "0 0 2 * * ? *", "paused": true});
    let put = app
        .call(
            "PUT",
            "/v1/workflows/daily-etl/schedules/nightly",
            &[],
            Some(&schedule.to_string()),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    // The schedule already fired Jan 2 through a plain complement of one date.
    let one = complement(
        "processDefinitionCode=77",
        r#"{"complementScheduleDateList":"2024-01-02 02:00:00"}"#,
    );
    let first = app.call("POST", V31, FORM, Some(&one)).await;
    let first_ids = ids(&first);
    app.run_backfill(backfill_of(&first)).await;

    let range = complement(
        "processDefinitionCode=77&runMode=RUN_MODE_PARALLEL&expectedParallelismNumber=3",
        r#"{"complementStartDate":"2024-01-01 00:00:00","complementEndDate":"2024-01-05 00:00:00"}"#,
    );
    let reply = app.call("POST", V31, FORM, Some(&range)).await;
    let dates = ids(&reply);
    assert_eq!(
        dates.len(),
        4,
        "Jan 1-4 at 02:00; Jan 5 02:00 is past the end"
    );
    assert_eq!(
        dates[2], first_ids[0],
        "newest first: Jan 2 is third, and already started"
    );
    let done = app.run_backfill(backfill_of(&reply)).await;
    assert_eq!(
        (
            done["state"].as_str(),
            done["created"].as_u64(),
            done["skipped"].as_u64()
        ),
        (Some("done"), Some(3), Some(1)),
        "{done}"
    );
    let newest = app.settled(&dates[0]).await;
    assert_eq!(newest["logical_date"], "2024-01-04T02:00:00Z", "{newest}");
    assert_eq!(newest["options"]["runMode"], "RUN_MODE_PARALLEL");

    let again = app.call("POST", V31, FORM, Some(&range)).await;
    assert_eq!(ids(&again), dates, "the same dates are the same requests");
    let second = app.run_backfill(backfill_of(&again)).await;
    assert_eq!(second["skipped"].as_u64(), Some(4), "{second}");
    let listed = app
        .call(
            "GET",
            "/v1/workflows/daily-etl/instances?limit=100",
            &[],
            None,
        )
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(4));
}

/// A complement is a backfill: like `POST .../backfills`, it needs the `admin` scope.
#[tokio::test]
async fn a_complement_needs_the_admin_scope_a_start_does_not() {
    let app = App::new();
    definition(&app, None, "report", 42).await;
    let starter = flowgate_core::auth::Caller {
        scopes: vec![flowgate_core::auth::Scope::Start],
        ..flowgate_core::auth::Caller::all_scopes("default")
    };
    let start = app
        .call_by(
            Some(starter.clone()),
            "POST",
            V31,
            FORM,
            Some("processDefinitionCode=42"),
        )
        .await;
    assert_eq!(ids(&start).len(), 1);
    let range = complement(
        "processDefinitionCode=42",
        r#"{"complementScheduleDateList":"2024-01-01 00:00:00"}"#,
    );
    app.call_by(Some(starter), "POST", V31, FORM, Some(&range))
        .await
        .assert_problem(403, "forbidden");
}

/// Without a schedule, a range is expanded as DolphinScheduler does: daily at midnight.
#[tokio::test]
async fn a_complement_without_a_schedule_runs_daily_at_midnight() {
    let app = App::new();
    definition(&app, None, "adhoc", 5).await;
    let range = complement(
        "processDefinitionCode=5&executionOrder=ASC_ORDER",
        r#"{"complementStartDate":"2024-03-01 00:00:00","complementEndDate":"2024-03-03 00:00:00"}"#,
    );
    let reply = app.call("POST", V33, FORM, Some(&range)).await;
    let dates = ids(&reply);
    assert_eq!(dates.len(), 3, "inclusive at both ends");
    let id = backfill_of(&reply);
    let view = app
        .call("GET", &format!("/v1/backfills/{id}"), &[], None)
        .await;
    assert_eq!(view.body["total"], 3, "{}", view.body);
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
