//! Crash test: load the real `flowgate serve`, kill -9 it mid-load, restart it on the same
//! data directory, and check every 2xx-acknowledged request against the exactly-once rule.
//! Then stop it with SIGTERM and check it exits cleanly.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_tests::binary::{Server, list_instances, register, settle};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");
const ARGS: &[&str] = &[
    "--visibility-timeout",
    "2s",
    "--reconcile-grace",
    "3s",
    "--reconcile-interval",
    "500ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let mut server = Server::start(BIN, dir.path(), ARGS, &[]);
    server.wait_healthy(&client).await;
    register(&client, &server.base, "crash").await;

    // Load from 32 clients until the kill; keep what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (client, base, stop) = (client.clone(), server.base.clone(), stop.clone());
        workers.spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("crash-{w}-{n}");
                let body = json!({"params": {"w": w, "n": n}});
                let sent = client
                    .post(format!("{base}/v1/workflows/crash/instances"))
                    .header("idempotency-key", &key)
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        if let Ok(v) = r.json::<Value>().await {
                            acked.push((key, body, v));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            acked
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    while let Some(joined) = workers.join_next().await {
        acked.extend(joined.expect("worker"));
    }
    assert!(
        acked.len() > 100,
        "the load acknowledged only {} requests",
        acked.len()
    );

    let server = Server::start(BIN, dir.path(), ARGS, &[]);
    server.wait_healthy(&client).await;
    let base = server.base.clone();

    // Every acknowledged request becomes CREATED with the instance it was promised, and a
    // retry after the crash gets the same request back.
    let mut expected = Vec::new();
    for (key, body, v) in &acked {
        let request_id = v["request_id"].as_str().expect("request_id");
        let instance_id = v["instance_id"].as_str().expect("instance_id");
        let view = settle(&client, &base, request_id, Duration::from_secs(60)).await;
        assert_eq!(
            view["status"], "CREATED",
            "acknowledged request lost or dead: {view}"
        );
        assert_eq!(view["instance_id"], instance_id);
        let replay: Value = client
            .post(format!("{base}/v1/workflows/crash/instances"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("replay")
            .json()
            .await
            .expect("json");
        assert_eq!(replay["instance_id"], instance_id);
        expected.push((request_id.to_owned(), instance_id.to_owned()));
    }

    // Exactly one instance per request, every acknowledged one among them.
    let listed = list_instances(&client, &base, "crash").await;
    let requests: HashSet<&str> = listed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(requests.len(), listed.len(), "a request has two instances");
    for pair in &expected {
        assert!(listed.contains(pair), "missing instance for {}", pair.0);
    }
    println!(
        "crash: {} acknowledged before kill -9, {} instances after restart",
        expected.len(),
        listed.len()
    );

    let exit = server.terminate().await;
    assert!(exit.success(), "serve exited with {exit} after SIGTERM");
}
