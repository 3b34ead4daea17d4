//! The dead-letter scenario and a timed replay of 1,000 letters on the embedded backend.

use std::sync::Arc;

use flowgate_tests::http::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_archived_and_restored() {
    flowgate_tests::fixtures::init_tracing();
    flowgate_tests::dlq::scenario(Arc::new(App::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_letters_replay() {
    let n = std::env::var("DLQ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let took = flowgate_tests::dlq::timed_replay(&App::new(), n).await;
    println!(
        "dlq replay on the embedded backend: {n} letters in {:.2} s ({:.0} letters/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
