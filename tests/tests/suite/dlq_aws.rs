//! The dead-letter scenario and a timed replay on the AWS adapters against moto (where
//! StartMessageMoveTask answers 500, so the fallback path runs).

use std::sync::Arc;
use std::time::Duration;

use flowgate_tests::aws::{NEEDS_MOTO, subject};
use flowgate_tests::http::App;

async fn app() -> App {
    let s = subject(Duration::from_secs(1), 5).await;
    App::over(s.store.clone(), s.queue.clone(), Box::new(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn dead_letters_are_listed_replayed_archived_and_restored_on_moto() {
    let _ = NEEDS_MOTO;
    flowgate_tests::fixtures::init_tracing();
    flowgate_tests::dlq::scenario(Arc::new(app().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn letters_replay_on_moto() {
    // moto slows down as a queue grows: CI replays 200; DLQ_N=1000 for the README figure.
    let n = std::env::var("DLQ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let took = flowgate_tests::dlq::timed_replay(&app().await, n).await;
    println!(
        "dlq replay on moto: {n} letters in {:.2} s ({:.0} letters/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
