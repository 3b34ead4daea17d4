//! End-to-end runs of the real binary: split roles on one data directory, fault injection
//! through `FLOWGATE_FAULTS`, and configuration errors at start.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_tests::binary::{Server, list_instances, register, settle, submit};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_workers_run_as_separate_processes_on_one_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let api = Server::start(BIN, dir.path(), &["--roles", "api"], &[]);
    api.wait_healthy(&client).await;
    register(&client, &api.base, "split").await;

    // Nothing creates instances yet: the request waits, accepted.
    let first = submit(&client, &api.base, "split", json!({"n": 1})).await;
    assert_eq!(first["status"], "ACCEPTED");

    let workers = Server::start(BIN, dir.path(), &["--roles", "consumer,reconciler"], &[]);
    let view = settle(
        &client,
        &api.base,
        first["request_id"].as_str().expect("id"),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(view["status"], "CREATED", "{view}");
    let waited = client
        .post(format!("{}/v1/workflows/split/instances", api.base))
        .header("prefer", "wait=10")
        .json(&json!({"params": {"n": 2}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(
        waited.status(),
        201,
        "the other process created it within the wait"
    );

    assert!(workers.terminate().await.success());
    assert!(api.terminate().await.success());
}

#[cfg(feature = "faults")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_in_the_real_binary_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let faults = "queue.send=0.2,store.put=0.1:after,consumer.create=0.5,queue.ack=0.2:after,store.update=0.05";
    let server = Server::start(
        BIN,
        dir.path(),
        &[
            "--retry-base",
            "10ms",
            "--visibility-timeout",
            "1s",
            "--reconcile-grace",
            "1s",
            "--reconcile-interval",
            "200ms",
        ],
        &[("FLOWGATE_FAULTS", faults)],
    );
    server.wait_healthy(&client).await;
    let base = server.base.clone();
    register(&client, &base, "chaos").await;

    let mut accepted = Vec::new();
    for n in 0..200 {
        let key = format!("chaos-{n}");
        let mut answer = None;
        for _ in 0..100 {
            let r = client
                .post(format!("{base}/v1/workflows/chaos/instances"))
                .header("idempotency-key", &key)
                .json(&json!({"params": {"n": n}}))
                .send()
                .await
                .expect("submit");
            if r.status() == 503 {
                assert_eq!(
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("1")
                );
                continue;
            }
            assert!(r.status().is_success(), "status {}", r.status());
            answer = Some(r.json::<Value>().await.expect("json"));
            break;
        }
        accepted.push(answer.expect("a retry with the same key completes the request"));
    }

    let mut created = std::collections::HashSet::new();
    let mut dead = 0;
    for a in &accepted {
        let view = settle(
            &client,
            &base,
            a["request_id"].as_str().expect("id"),
            Duration::from_secs(60),
        )
        .await;
        match view["status"].as_str() {
            Some("CREATED") => {
                created.insert((
                    view["request_id"].as_str().unwrap_or_default().to_owned(),
                    a["instance_id"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            Some("DEAD") => {
                dead += 1;
                assert!(
                    view["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{view}"
                );
            }
            _ => panic!("request never settled: {view}"),
        }
    }
    let listed = list_instances(&client, &base, "chaos").await;
    let requests: std::collections::HashSet<&str> =
        listed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(requests.len(), listed.len(), "one instance per request");
    assert_eq!(
        listed
            .iter()
            .cloned()
            .collect::<std::collections::HashSet<_>>(),
        created,
        "instances are exactly the CREATED requests"
    );
    println!("faults: {} created, {dead} dead of 200", created.len());
    assert!(server.terminate().await.success());
}

#[cfg(not(feature = "faults"))]
#[test]
fn faults_are_refused_without_the_feature() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("FLOWGATE_FAULTS", "queue.send=0.5")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features faults"));
}

#[test]
fn bad_configuration_fails_at_start_naming_the_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run")
    };
    let out = run(&["--visibility-timeout", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--visibility-timeout"));
    let out = run(&[], &[("FLOWGATE_MAX_RECEIVE_COUNT", "0")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max-receive-count"));
    let out = run(&["--roles", "api,janitor"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("janitor"));
}

/// Names of fresh AWS resources for one test, as environment variables.
fn aws_names() -> Vec<(&'static str, String)> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    vec![
        ("FLOWGATE_TABLE", format!("fg-e2e-{id}")),
        ("FLOWGATE_QUEUE", format!("fg-e2e-{id}")),
        ("FLOWGATE_DLQ", format!("fg-e2e-{id}-dlq")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn the_aws_backend_serves_the_same_api_on_moto() {
    let names = aws_names();
    let env: Vec<(&str, &str)> = names.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().expect("temp dir");

    // Not bootstrapped yet: serve refuses, naming the fix.
    let out = Command::new(BIN)
        .args(["serve", "--backend", "aws", "--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flowgate aws bootstrap"));

    for _ in 0..2 {
        let out = Command::new(BIN)
            .args([
                "aws",
                "bootstrap",
                "--visibility-timeout",
                "2s",
                "--max-receive-count",
                "3",
            ])
            .envs(env.iter().copied())
            .output()
            .expect("bootstrap");
        assert!(
            out.status.success(),
            "bootstrap (twice is harmless): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let client = flowgate_tests::client();
    let server = Server::start(
        BIN,
        dir.path(),
        &["--backend", "aws", "--retry-base", "10ms"],
        &env,
    );
    server.wait_healthy(&client).await;
    register(&client, &server.base, "aws").await;
    let post = |key: &'static str| {
        client
            .post(format!("{}/v1/workflows/aws/instances", server.base))
            .header("idempotency-key", key)
            .header("prefer", "wait=15")
            .json(&json!({"params": {"n": 1}}))
            .send()
    };
    let first = post("aws-1").await.expect("submit");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let replay = post("aws-1").await.expect("replay");
    assert_eq!(replay.status(), 200);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["instance_id"], first["instance_id"]);

    let view = settle(
        &client,
        &server.base,
        first["request_id"].as_str().expect("id"),
        Duration::from_secs(5),
    )
    .await;
    let events: Vec<&str> = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert_eq!(events, ["accepted", "enqueued", "created"], "{view}");
    let listed = list_instances(&client, &server.base, "aws").await;
    assert_eq!(listed.len(), 1);

    // The DolphinScheduler door, on DynamoDB: the workflow found by its ds_code.
    let def = json!({"name": "ds", "ds_code": 31337, "params_schema": {"type": "object"}});
    let put = client
        .put(format!("{}/v1/workflows/ds-aws", server.base))
        .json(&def)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let door = client
        .post(format!(
            "{}/dolphinscheduler/projects/1/executors/start-process-instance",
            server.base
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "processDefinitionCode=31337&failureStrategy=END&warningType=NONE&scheduleTime=\
             &startParams=%7B%22n%22%3A2%7D",
        )
        .send()
        .await
        .expect("door");
    let door: Value = door.json().await.expect("json");
    assert_eq!(door["code"], 0, "{door}");
    let view = settle(
        &client,
        &server.base,
        door["data"][0].as_str().expect("id"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (&view["status"], &view["options"]["failureStrategy"]),
        (&json!("CREATED"), &json!("END")),
        "{view}"
    );
    assert!(server.terminate().await.success());
}

/// The SSRF guard on the real server: without `--allow-private-targets` a webhook to a
/// loopback, link-local or private address (or `localhost`) is refused with a 400 that
/// says why; with the flag, the same target is stored, and its secret is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_webhook_targets_are_refused_unless_allowed() {
    let client = flowgate_tests::client();
    let put = |base: String, url: &'static str| {
        let client = client.clone();
        async move {
            client
                .put(format!("{base}/v1/workflows/hooked"))
                .json(
                    &json!({"name": "hooked", "params_schema": {"type": "object"},
                    "target": {"type": "webhook", "url": url, "secret": "top-secret"}}),
                )
                .send()
                .await
                .expect("put")
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let guarded = Server::start(BIN, dir.path(), &[], &[]);
    guarded.wait_healthy(&client).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/hook",
        "http://[::1]/hook",
        "http://localhost:9/hook",
        "file:///etc/passwd",
    ] {
        let answer = put(guarded.base.clone(), url).await;
        assert_eq!(answer.status(), 400, "{url}");
        let problem: Value = answer.json().await.expect("problem");
        assert_eq!(problem["errors"][0]["pointer"], "/target", "{problem}");
    }
    assert!(guarded.terminate().await.success());

    let dir = tempfile::tempdir().expect("temp dir");
    let open = Server::start(BIN, dir.path(), &["--allow-private-targets"], &[]);
    open.wait_healthy(&client).await;
    let answer = put(open.base.clone(), "http://127.0.0.1:9/hook").await;
    assert_eq!(answer.status(), 201);
    let shown = client
        .get(format!("{}/v1/workflows/hooked", open.base))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(!shown.contains("top-secret"), "{shown}");
    assert!(shown.contains("\"secret_set\":true"), "{shown}");
    // The client command sends a target too.
    let put = Command::new(BIN)
        .args([
            "--url",
            &open.base,
            "workflows",
            "put",
            "cli-hooked",
            "--name",
            "CLI",
        ])
        .args([
            "--target",
            r#"{"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "cli-secret"}"#,
        ])
        .output()
        .expect("run the client");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let printed = String::from_utf8_lossy(&put.stdout);
    assert!(
        printed.contains("webhook") && !printed.contains("cli-secret"),
        "{printed}"
    );
    assert!(open.terminate().await.success());
}
