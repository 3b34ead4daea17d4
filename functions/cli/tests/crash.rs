//! Crash test: load the real `flowgate serve`, kill -9 it mid-load, restart it on the same
//! data directory, and check every 2xx-acknowledged request against the exactly-once rule.
//! Then stop it with SIGTERM and check it exits cleanly. A second run does the same with a
//! webhook target that refuses each instance's first delivery, and checks every created
//! instance was handed off.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_tests::binary::{Server, list_instances, register, settle};
use flowgate_tests::receiver::{Answer, Receiver};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");
const ARGS: &[&str] = &[
    "--visibility-timeout",
    "2s",
    "--reconcile-grace",
    "3s",
    "--reconcile-interval",
    "500ms",
];

/// Loads `workflow` from 32 clients, kills the server with SIGKILL mid-load, and answers
/// what was acknowledged: (key, body, answer).
async fn load_then_kill_9(
    client: &reqwest::Client,
    server: &mut Server,
    workflow: &str,
) -> Vec<(String, Value, Value)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (client, base, stop) = (client.clone(), server.base.clone(), stop.clone());
        let workflow = workflow.to_owned();
        workers.spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("crash-{w}-{n}");
                let body = json!({"params": {"w": w, "n": n}});
                let sent = client
                    .post(format!("{base}/v1/workflows/{workflow}/instances"))
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
    acked
}

/// Every acknowledged request settles as `status` with the instance it was promised, and a
/// retry after the crash gets the same request back; exactly one instance per request.
/// Answers the promised instance ids.
async fn check_acknowledged(
    client: &reqwest::Client,
    base: &str,
    workflow: &str,
    acked: &[(String, Value, Value)],
    status: &str,
) -> HashSet<String> {
    let mut expected = Vec::new();
    for (key, body, v) in acked {
        let request_id = v["request_id"].as_str().expect("request_id");
        let instance_id = v["instance_id"].as_str().expect("instance_id");
        let view = settle(client, base, request_id, Duration::from_secs(60)).await;
        assert_eq!(
            view["status"], status,
            "acknowledged request lost, dead or not handed off: {view}"
        );
        assert_eq!(view["instance_id"], instance_id);
        let replay: Value = client
            .post(format!("{base}/v1/workflows/{workflow}/instances"))
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
    let listed = list_instances(client, base, workflow).await;
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
    listed.into_iter().map(|(_, i)| i).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let mut server = Server::start(BIN, dir.path(), ARGS, &[]);
    server.wait_healthy(&client).await;
    register(&client, &server.base, "crash").await;
    let acked = load_then_kill_9(&client, &mut server, "crash").await;

    let server = Server::start(BIN, dir.path(), ARGS, &[]);
    server.wait_healthy(&client).await;
    check_acknowledged(&client, &server.base, "crash", &acked, "CREATED").await;

    let exit = server.terminate().await;
    assert!(exit.success(), "serve exited with {exit} after SIGTERM");
}

/// With a webhook target that refuses each instance's first delivery (503): after kill -9
/// and a restart,
/// every created instance reaches the receiver, none is missing, and the receiver can
/// count each once by its instance id (raw deliveries are reported apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_hands_every_created_instance_off() {
    let rx = Receiver::start("crash-secret").await;
    rx.always(Answer::FirstFails);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let args: Vec<&str> = ARGS
        .iter()
        .copied()
        .chain(["--allow-private-targets"])
        .collect();
    let mut server = Server::start(BIN, dir.path(), &args, &[]);
    server.wait_healthy(&client).await;
    let put = client
        .put(format!("{}/v1/workflows/hooked", server.base))
        .json(&json!({"name": "hooked", "params_schema": {"type": "object"},
            "target": {"type": "webhook", "url": rx.url, "timeout": "2s", "secret": "crash-secret"}}))
        .send()
        .await
        .expect("register");
    assert!(put.status().is_success(), "{}", put.status());
    let acked = load_then_kill_9(&client, &mut server, "hooked").await;

    let server = Server::start(BIN, dir.path(), &args, &[]);
    server.wait_healthy(&client).await;
    let created = check_acknowledged(&client, &server.base, "hooked", &acked, "DISPATCHED").await;
    let accepted = rx.accepted();
    let missing: Vec<_> = created.difference(&accepted).collect();
    assert!(
        missing.is_empty(),
        "created but never handed off: {missing:?}"
    );
    assert!(
        accepted.is_subset(&created),
        "a hand-off of no created instance"
    );
    assert!(rx.delivered().iter().all(|d| d.signed));
    println!(
        "crash hand-off: {} instances created, {} distinct handed off, {} raw deliveries",
        created.len(),
        accepted.len(),
        rx.delivered().len()
    );
    let exit = server.terminate().await;
    assert!(exit.success(), "serve exited with {exit} after SIGTERM");
}
