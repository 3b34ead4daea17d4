//! Schedules in the real binary: two `serve` processes with the scheduler role on one data
//! directory start exactly one instance per fire.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use flowgate_tests::binary::{Server, instance_items, register};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_data_directory_fire_each_time_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let tick = ["--scheduler-tick", "50ms"];
    let first = Server::start(BIN, dir.path(), &tick, &[]);
    let second = Server::start(BIN, dir.path(), &tick, &[]);
    first.wait_healthy(&client).await;
    second.wait_healthy(&client).await;
    register(&client, &first.base, "ticks").await;
    let schedule = format!("{}/v1/workflows/ticks/schedules/every-second", first.base);
    let put = client
        .put(&schedule)
        .json(&json!({"cron": "* * * * * *", "params": {}}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let paused = client
        .put(&schedule)
        .json(&json!({"cron": "* * * * * *", "params": {}, "paused": true}))
        .send()
        .await
        .expect("pause");
    assert_eq!(paused.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let items = instance_items(&client, &second.base, "ticks").await;
    let dates: Vec<&str> = items
        .iter()
        .filter_map(|i| i["logical_date"].as_str())
        .collect();
    let distinct: HashSet<&str> = dates.iter().copied().collect();
    assert!(
        dates.len() >= 3,
        "a per-second schedule fired {} times in 4.5 s",
        dates.len()
    );
    assert_eq!(
        distinct.len(),
        dates.len(),
        "two schedulers, one instance per fire: {dates:?}"
    );
    assert!(first.terminate().await.success());
    assert!(second.terminate().await.success());
}
