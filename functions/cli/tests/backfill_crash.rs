//! A backfill of 1,000 dates survives kill -9: after a restart it resumes where it was, and
//! ends with exactly 1,000 instances, one per date.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use flowgate_tests::binary::{Server, list_instances, register};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");
const TICK: &[&str] = &["--scheduler-tick", "20ms", "--visibility-timeout", "2s"];

async fn view(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/v1/backfills/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_mid_way_resumes_and_creates_each_date_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let mut server = Server::start(BIN, dir.path(), TICK, &[]);
    server.wait_healthy(&client).await;
    register(&client, &server.base, "history").await;
    let body = json!({"from": "2020-01-01T00:00:00Z", "to": "2022-09-26T00:00:00Z",
        "cron": "0 0 * * *", "max_in_flight": 50, "params": {}});
    let started: Value = client
        .post(format!("{}/v1/workflows/history/backfills", server.base))
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(started["dates"], 1000, "{started}");
    let id = started["backfill_id"].as_str().expect("id").to_owned();

    // Kill it once the backfill is under way, but before it is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = view(&client, &server.base, &id).await;
        if v["started"].as_u64().unwrap_or(0) >= 100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill never got going: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let server = Server::start(BIN, dir.path(), TICK, &[]);
    server.wait_healthy(&client).await;
    let resumed = view(&client, &server.base, &id).await;
    assert!(
        resumed["started"].as_u64().unwrap_or(0) >= 1,
        "progress survived: {resumed}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let v = view(&client, &server.base, &id).await;
        if v["state"] == "done" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill never finished: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["created"].as_u64(), Some(1000), "{done}");
    let listed = list_instances(&client, &server.base, "history").await;
    let requests: HashSet<&str> = listed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(listed.len(), 1000, "exactly one instance per date");
    assert_eq!(requests.len(), 1000);
    println!(
        "backfill across kill -9: {} dates, {} instances",
        1000,
        listed.len()
    );
    assert!(server.terminate().await.success());
}
