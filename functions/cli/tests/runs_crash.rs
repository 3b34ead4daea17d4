//! Concurrency across a crash: a receiver that holds each run for a while and reports
//! through its callback never sees more than the limit at once for a key, over hundreds of
//! starts with `flowgate serve` killed with SIGKILL in the middle, and every start ends in
//! exactly one final instance (or `SKIPPED`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use flowgate_tests::binary::{Server, request_view};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");
const LIMIT: usize = 2;
const CUSTOMERS: usize = 4;
const STARTS: usize = 240;

/// What the receiver saw: runs open per key, the most at once, each instance once.
#[derive(Default)]
struct Seen {
    open: HashMap<String, usize>,
    most: HashMap<String, usize>,
    instances: HashSet<String>,
    ended: usize,
}

#[derive(Clone)]
struct Runner {
    seen: Arc<Mutex<Seen>>,
    /// The server's current base URL (it moves to a new port when restarted).
    base: Arc<Mutex<String>>,
    client: reqwest::Client,
}

/// Takes a hand-off: counts the run open for its key, then, after a while, closes it and
/// reports `SUCCEEDED` through the callback (retrying while the server is down).
async fn hand_off(State(runner): State<Runner>, Json(instance): Json<Value>) -> &'static str {
    let id = instance["instance_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = instance["params"]["customer"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    {
        let mut seen = runner.seen.lock().expect("lock");
        if !seen.instances.insert(id.clone()) {
            // A hand-off repeated after the crash: the same run.
            return "ok";
        }
        let open = seen.open.entry(key.clone()).or_default();
        *open += 1;
        let open = *open;
        let most = seen.most.entry(key.clone()).or_default();
        *most = (*most).max(open);
    }
    let token = instance["callback"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tokio::spawn(async move {
        let hold = 20 + u64::from(id.as_bytes().last().copied().unwrap_or(0)) % 60;
        tokio::time::sleep(Duration::from_millis(hold)).await;
        {
            let mut seen = runner.seen.lock().expect("lock");
            *seen.open.entry(key).or_default() -= 1;
        }
        for _ in 0..600 {
            let base = runner.base.lock().expect("lock").clone();
            let sent = runner
                .client
                .post(format!("{base}/v1/instances/{id}/status"))
                .bearer_auth(&token)
                .json(&json!({"status": "SUCCEEDED", "output": {"by": "runner"}}))
                .send()
                .await;
            if let Ok(r) = sent
                && r.status().is_success()
            {
                runner.seen.lock().expect("lock").ended += 1;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    "ok"
}

fn serve(dir: &std::path::Path) -> Server {
    Server::start(
        BIN,
        dir,
        &[
            "--visibility-timeout",
            "2s",
            "--reconcile-grace",
            "2s",
            "--reconcile-interval",
            "500ms",
            "--allow-private-targets",
        ],
        &[],
    )
}

/// The receiver, listening, and workflow `serial` (a limit per customer, queued) handing
/// off to it, registered on the server at `base`.
async fn rig(client: &reqwest::Client, base: &str) -> Runner {
    let runner = Runner {
        seen: Arc::default(),
        base: Arc::new(Mutex::new(base.to_owned())),
        client: client.clone(),
    };
    let app = axum::Router::new()
        .route("/hook", post(hand_off))
        .with_state(runner.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let put = client
        .put(format!("{base}/v1/workflows/serial"))
        .json(
            &json!({"name": "serial", "params_schema": {"type": "object"},
            "target": {"type": "webhook", "url": hook},
            "concurrency": {"limit": LIMIT, "key": "/params/customer", "on_limit": "queue"}}),
        )
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 201);
    runner
}

/// Start `n` of `serial` (keyed, so a retry is the same start) on the server at `base`.
async fn start(client: &reqwest::Client, base: &str, n: usize) -> String {
    let key = format!("start-{n}");
    let body = json!({"params": {"customer": format!("c{}", n % CUSTOMERS), "n": n}});
    let sent: Value = client
        .post(format!("{base}/v1/workflows/serial/instances"))
        .header("idempotency-key", &key)
        .json(&body)
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    sent["request_id"].as_str().expect("an id").to_owned()
}

/// Every start ends (a final instance, once), and the receiver never saw more than the
/// limit at once for a key.
async fn every_start_ends_once(
    client: &reqwest::Client,
    base: &str,
    runner: &Runner,
    accepted: Vec<String>,
    what: &str,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut unfinished = accepted;
    while !unfinished.is_empty() {
        let mut still = Vec::new();
        for id in unfinished {
            let view = request_view(client, base, &id).await;
            let done = view["status"] == "SKIPPED" || view["run"]["status"] == "SUCCEEDED";
            if !done {
                still.push(id);
            }
        }
        unfinished = still;
        if unfinished.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} starts never ended; one: {}",
            unfinished.len(),
            request_view(client, base, &unfinished[0]).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen = runner.seen.lock().expect("lock");
    assert_eq!(seen.instances.len(), STARTS, "one run per start");
    for (key, most) in &seen.most {
        assert!(*most <= LIMIT, "{most} runs at once for {key}");
    }
    assert!(
        seen.most.values().any(|m| *m == LIMIT),
        "the load filled a key's slots: {:?}",
        seen.most
    );
    println!(
        "{STARTS} starts over {CUSTOMERS} keys at limit {LIMIT}, {what}: most at once per key \
         {:?}, {} runs ended",
        seen.most, seen.ended
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_holds_across_a_kill_9_and_every_start_ends_once() {
    let dir = tempfile::tempdir().expect("a directory");
    let client = flowgate_tests::client();
    let mut server = serve(dir.path());
    server.wait_healthy(&client).await;
    let runner = rig(&client, &server.base).await;
    let mut accepted = Vec::new();
    for n in 0..STARTS {
        if n == STARTS / 2 {
            // Kill it mid-stream, with runs open and starts waiting, and bring it back on
            // the same directory (on another port).
            server.kill9();
            server = serve(dir.path());
            server.wait_healthy(&client).await;
            *runner.base.lock().expect("lock") = server.base.clone();
        }
        accepted.push(start(&client, &server.base, n).await);
    }
    every_start_ends_once(
        &client,
        &server.base,
        &runner,
        accepted,
        "killed -9 halfway",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_holds_across_two_processes_on_one_directory() {
    let dir = tempfile::tempdir().expect("a directory");
    let client = flowgate_tests::client();
    let (a, b) = (serve(dir.path()), serve(dir.path()));
    a.wait_healthy(&client).await;
    b.wait_healthy(&client).await;
    let runner = rig(&client, &a.base).await;
    let mut accepted = Vec::new();
    for n in 0..STARTS {
        // Each process accepts (and, with its own consumer, creates) half the starts.
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        accepted.push(start(&client, base, n).await);
    }
    every_start_ends_once(&client, &a.base, &runner, accepted, "two processes").await;
}
