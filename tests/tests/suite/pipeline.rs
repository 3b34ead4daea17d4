//! The pipeline under load and faults on the embedded backend: 5,000 requests at
//! concurrency 64, 20% reusing an earlier key (half with the same payload, half with a
//! different one), with faults injected at the store and queue ports (before and after the
//! call). After the drain: exactly one instance per accepted key, none for 422s, nothing
//! lost, and every request CREATED or DEAD with a reason.

use std::sync::Arc;
use std::time::Duration;

use flowgate_tests::http::App;
use flowgate_tests::pipeline::{drain, load, plan, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_requests_with_faults_and_key_reuse() {
    flowgate_tests::fixtures::init_tracing();
    let app = Arc::new(App::new());
    app.register("orders", true).await;
    // Creation fails often enough that a few requests exhaust their deliveries and end DEAD.
    app.faults
        .apply(
            "store.put=0.05:after,queue.send=0.05,store.update=0.02,store.get_workflow=0.02,\
             consumer.create=0.3,queue.ack=0.03:after,queue.receive=0.02,\
             queue.retry_later=0.05,queue.dead_letter=0.05",
        )
        .expect("plan");
    let _consumer = app.start_consumer();
    let _reconciler = app.start_reconciler(Duration::from_millis(600));

    let loaded = load(app.clone(), "default", "orders", &plan(5_000, 7), 64).await;
    assert!(
        loaded.conflicts > 300,
        "the plan reuses ~500 keys with other payloads: {}",
        loaded.conflicts
    );
    drain(&app, "default", &loaded, Duration::from_secs(120), || {
        tokio::time::sleep(Duration::from_millis(200))
    })
    .await;
    let (created, dead) = verify(&app, "default", "orders", &loaded).await;
    println!(
        "pipeline: 5000 requests, {} accepted keys, {created} created, {dead} dead, {} conflicts (422)",
        loaded.accepted.len(),
        loaded.conflicts
    );
}
