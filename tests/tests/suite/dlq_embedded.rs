//! The dead-letter scenario and a timed replay of 1,000 letters on the embedded backend.

use std::sync::{Arc, Mutex};

use flowgate_core::metrics::{Labels, Metric, Metrics};
use flowgate_core::model::RequestStatus;
use flowgate_core::usecases::dlq::{LetterFilter, ReplayOptions};
use flowgate_tests::dlq;
use flowgate_tests::fixtures::tenant;
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

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, f64)>>);

impl Metrics for Recorder {
    fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        let workflow = labels.workflow.unwrap_or("-");
        let name = format!("{}/{workflow}/{}", metric.name(), labels.outcome);
        self.0.lock().expect("lock").push((name, value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_archives_are_counted_in_metrics() {
    let app = App::new();
    let t = tenant();
    app.register_as(Some(&t), "counted", true).await;
    dlq::dead_letter(&app, &t, "counted", 3).await;
    let recorder = Arc::new(Recorder::default());
    let flowgate = app.flowgate.clone().with_metrics(recorder.clone());
    let options = ReplayOptions {
        max: Some(2),
        ..ReplayOptions::default()
    };
    flowgate
        .dlq_replay(&options, &|_| {})
        .await
        .expect("replay");
    let mut sink = dlq::TextSink::default();
    flowgate
        .dlq_archive(&LetterFilter::default(), None, &mut sink)
        .await
        .expect("archive");
    let counted = recorder.0.lock().expect("lock").clone();
    let sum = |name: &str| -> f64 {
        counted
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        sum("replayed/counted/replayed"),
        2.0,
        "by workflow: {counted:?}"
    );
    assert_eq!(sum("replayed/counted/failed"), 0.0, "{counted:?}");
    assert_eq!(sum("dlq_archive/-/archived"), 1.0, "{counted:?}");
}

/// A replay re-drives the letters there when it began, once each: a letter that fails again
/// while it runs (its creation still fails) is left for the next replay, and the replay
/// ends, with no `max` to bound it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_re_drives_each_letter_once_while_they_fail_again() {
    let app = App::new();
    let t = tenant();
    app.register_as(Some(&t), "again", true).await;
    let ids = dlq::dead_letter(&app, &t, "again", 3).await;
    app.faults
        .apply("consumer.create=1.0:permanent")
        .expect("plan");
    let _consumer = app.start_consumer();
    let options = ReplayOptions {
        filter: LetterFilter {
            workflow: Some("again".into()),
            ..LetterFilter::default()
        },
        rate: Some("5".parse().expect("a rate")),
        ..ReplayOptions::default()
    };
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        app.flowgate.dlq_replay(&options, &|_| {}),
    )
    .await
    .expect("the replay ends")
    .expect("replay");
    assert_eq!(
        (report.replayed, report.failed),
        (3, 0),
        "each letter once: {report:?}"
    );
    let mut statuses = dlq::statuses(&app, &t, &ids).await;
    for _ in 0..100 {
        if statuses.get(&RequestStatus::Dead) == Some(&3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        statuses = dlq::statuses(&app, &t, &ids).await;
    }
    assert_eq!(statuses.get(&RequestStatus::Dead), Some(&3), "{statuses:?}");
}
