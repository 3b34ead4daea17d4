//! Guards on the work a start costs the embedded store, not its time: a fixed workload
//! (1,000 starts one by one, then 1,000 in batches of 100), each created by a consumer,
//! counted in writer jobs, SQL statements and bytes of database per start. A change that
//! adds a write (or a statement, or an index) to the hot path fails here, on any machine.
//!
//! The ceilings are the design's: accepting a start is one job (a batch, one job for all
//! its starts), creating a receive's instances is one job; each start is one row, written
//! once when accepted and once when created.

use std::sync::Arc;

use serde_json::{Value, json};

use flowgate_embedded::{Embedded, WriterCounts};
use flowgate_tests::fixtures::TempEmbedded;
use flowgate_tests::http::App;

const STARTS: usize = 1_000;

/// The backend behind `app`.
fn backend(app: &App) -> Arc<Embedded> {
    app.guard
        .downcast_ref::<TempEmbedded>()
        .expect("an embedded app")
        .backend
        .clone()
}

/// Work per start between two counts.
fn per_start(before: WriterCounts, after: WriterCounts) -> (f64, f64, f64) {
    let n = STARTS as f64;
    (
        (after.jobs - before.jobs) as f64 / n,
        (after.commits - before.commits) as f64 / n,
        (after.statements - before.statements) as f64 / n,
    )
}

/// Waits until every start of `ids` is created.
async fn all_created(app: &App, ids: &[String]) {
    for id in ids {
        let view = app.settled(id).await;
        assert_eq!(view["status"], "CREATED", "{view}");
    }
}

/// Runs `accept` (which answers the request ids it accepted) with a consumer, until every
/// start is created; answers the writer's work per start and the database's growth.
async fn measure<F, Fut>(app: &App, accept: F) -> ((f64, f64, f64), f64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let store = backend(app);
    let bytes_before = store.bytes_in_use().await.expect("size");
    let before = store.writer_counts();
    let _consumer = app.start_consumer();
    let ids = accept().await;
    assert_eq!(ids.len(), STARTS);
    all_created(app, &ids).await;
    let after = store.writer_counts();
    let bytes = store.bytes_in_use().await.expect("size") - bytes_before;
    (per_start(before, after), bytes as f64 / STARTS as f64)
}

fn params(n: usize) -> Value {
    json!({"amount": n + 1, "customer": format!("c-{:05}", n % 977)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_one_by_one_costs_two_writer_jobs_and_one_row() {
    let app = App::new();
    app.register("orders", true).await;
    let ((jobs, commits, statements), bytes) = measure(&app, || async {
        let mut ids = Vec::new();
        for n in 0..STARTS {
            let key = format!("one-{n}");
            let reply = app
                .call(
                    "POST",
                    "/v1/workflows/orders/instances",
                    &[("idempotency-key", &key)],
                    Some(&json!({ "params": params(n) }).to_string()),
                )
                .await;
            assert_eq!(reply.status, 202, "{}", reply.body);
            ids.push(reply.body["request_id"].as_str().unwrap().to_owned());
        }
        ids
    })
    .await;
    println!(
        "one by one, per start: {jobs:.3} writer jobs, {commits:.3} commits, \
         {statements:.2} statements, {bytes:.0} bytes of database"
    );
    // Accepting: one job (a savepoint, an insert). Creating: at most one job (a savepoint,
    // a read and an update of the row); the acknowledgement writes nothing.
    assert!(jobs <= 2.0, "{jobs:.3} writer jobs per start, over 2");
    assert!(commits <= 2.0, "{commits:.3} commits per start, over 2");
    // Each job: a savepoint and its release around its statements; each commit: its begin
    // and commit (at most one per job).
    assert!(
        statements <= 11.0,
        "{statements:.2} statements per start, over 11"
    );
    // A row of about 230 bytes (the usual history in its short form) and five index
    // entries; a thousand rows leave their pages partly filled (docs/benchmarks.md has a
    // million starts).
    assert!(bytes <= 400.0, "{bytes:.0} bytes per start, over 400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_100_costs_one_writer_job_to_accept() {
    let app = App::new();
    app.register("orders", true).await;
    let ((jobs, commits, statements), bytes) = measure(&app, || async {
        let mut ids = Vec::new();
        for batch in 0..STARTS / 100 {
            let starts: Vec<Value> = (0..100)
                .map(|i| {
                    let n = batch * 100 + i;
                    json!({"idempotency_key": format!("many-{n}"), "params": params(n)})
                })
                .collect();
            let reply = app
                .call(
                    "POST",
                    "/v1/workflows/orders/instances/batch",
                    &[],
                    Some(&json!({ "starts": starts }).to_string()),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(reply.body["accepted"], 100, "{}", reply.body);
            ids.extend(
                reply.body["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["request_id"].as_str().unwrap().to_owned()),
            );
        }
        ids
    })
    .await;
    println!(
        "in batches of 100, per start: {jobs:.3} writer jobs, {commits:.3} commits, \
         {statements:.2} statements, {bytes:.0} bytes of database"
    );
    // One job accepts the batch; the consumer creates what one receive brings in one job:
    // at most the 100 of a batch, at least one each.
    assert!(jobs <= 0.11, "{jobs:.3} writer jobs per start, over 0.11");
    assert!(commits <= 0.11, "{commits:.3} commits per start, over 0.11");
    // The insert; the creation's read and update; a job's savepoint and release, and a
    // commit's begin and commit, shared by up to 100 starts.
    assert!(
        statements <= 3.6,
        "{statements:.2} statements per start, over 3.6"
    );
    assert!(bytes <= 400.0, "{bytes:.0} bytes per start, over 400");
}
