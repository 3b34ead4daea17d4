//! Crash test: load the real `flowgate serve`, kill -9 it mid-load, restart it on the same
//! data directory, and check every 2xx-acknowledged request against the exactly-once rule.
//! Then stop it with SIGTERM and check it exits cleanly.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn serve(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--visibility-timeout",
            "2s",
            "--reconcile-grace",
            "3s",
            "--reconcile-interval",
            "500ms",
        ])
        .env("RUST_LOG", "warn")
        .env_remove("FLOWGATE_FAULTS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flowgate serve")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = serve(dir.path(), port);
    wait_healthy(&client, &base).await;
    let put = client
        .put(format!("{base}/v1/workflows/crash"))
        .json(&json!({"name": "crash", "params_schema": {"type": "object"}}))
        .send()
        .await
        .expect("register");
    assert!(put.status().is_success());

    // Load from 32 clients until the kill; keep what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
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
    child.kill().expect("kill -9");
    let _ = child.wait();
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

    let mut child = serve(dir.path(), port);
    wait_healthy(&client, &base).await;

    // Every acknowledged request becomes CREATED, with the instance it was promised.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut expected: HashMap<String, String> = HashMap::new();
    for (key, body, v) in &acked {
        let request_id = v["request_id"].as_str().expect("request_id").to_owned();
        let instance_id = v["instance_id"].as_str().expect("instance_id").to_owned();
        loop {
            let view: Value = client
                .get(format!("{base}/v1/requests/{request_id}"))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            assert_ne!(
                view["status"],
                Value::Null,
                "acknowledged request {request_id} lost: {view}"
            );
            if view["status"] == "CREATED" {
                assert_eq!(view["instance_id"], instance_id.as_str());
                break;
            }
            assert_ne!(view["status"], "DEAD", "{view}");
            assert!(
                Instant::now() < deadline,
                "request {request_id} never created: {view}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A retry after the crash gets the same request back.
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
        assert_eq!(replay["instance_id"], instance_id.as_str());
        expected.insert(request_id, instance_id);
    }

    // Exactly one instance per request, every acknowledged one among them.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/workflows/crash/instances?limit=100&cursor={c}"),
            None => format!("{base}/v1/workflows/crash/instances?limit=100"),
        };
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            listed.push((
                item["request_id"].as_str().unwrap_or_default().to_owned(),
                item["instance_id"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let requests: HashSet<&str> = listed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(requests.len(), listed.len(), "a request has two instances");
    for (request_id, instance_id) in &expected {
        assert!(
            listed.contains(&(request_id.clone(), instance_id.clone())),
            "missing {request_id}"
        );
    }
    println!(
        "crash: {} acknowledged before kill -9, {} instances after restart",
        expected.len(),
        listed.len()
    );

    // SIGTERM: a graceful shutdown that exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(exit.success(), "serve exited with {exit} after SIGTERM");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
