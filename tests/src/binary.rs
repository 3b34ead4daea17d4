//! Drives the real `flowgate` binary: start `serve` on a free port, wait for health, kill it
//! (-9 or SIGTERM), and read a workflow's instances over HTTP.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `flowgate serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts `bin serve --listen <free port> --data-dir <dir> <args>` with `env` set; its
    /// logs (at `warn`) reach stderr only when `TEST_LOG` is set.
    pub fn start(bin: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(bin);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("FLOWGATE_FAULTS")
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn flowgate serve");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until `/healthz` answers 200 (the API role must be running).
    pub async fn wait_healthy(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} never became healthy", self.base);
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to 15 s for the exit.
    pub async fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within 15 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every (request_id, instance_id) of a workflow's instances, paging through the API.
pub async fn list_instances(
    client: &reqwest::Client,
    base: &str,
    workflow: &str,
) -> Vec<(String, String)> {
    instance_items(client, base, workflow)
        .await
        .iter()
        .map(|item| {
            (
                item["request_id"].as_str().unwrap_or_default().to_owned(),
                item["instance_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Every instance of a workflow as the API lists it, paging through.
pub async fn instance_items(client: &reqwest::Client, base: &str, workflow: &str) -> Vec<Value> {
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/workflows/{workflow}/instances?limit=100&cursor={c}"),
            None => format!("{base}/v1/workflows/{workflow}/instances?limit=100"),
        };
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        listed.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return listed,
        }
    }
}

/// Polls a request until it leaves `ACCEPTED` or `within` runs out; returns its view.
pub async fn settle(
    client: &reqwest::Client,
    base: &str,
    request_id: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let view = request_view(client, base, request_id).await;
        // Settled: created (and handed off, where a target is owed it) or dead.
        let owed = view["status"] == "CREATED"
            && view["dispatch"].is_object()
            && view["dispatch"]["dispatched_at"].is_null();
        if (view["status"] != "ACCEPTED" && !owed) || Instant::now() > deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /v1/requests/{request_id}`, as JSON.
pub async fn request_view(client: &reqwest::Client, base: &str, request_id: &str) -> Value {
    client
        .get(format!("{base}/v1/requests/{request_id}"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

/// `POST /v1/workflows/{workflow}/instances` with `params`; the answer as JSON.
pub async fn submit(client: &reqwest::Client, base: &str, workflow: &str, params: Value) -> Value {
    client
        .post(format!("{base}/v1/workflows/{workflow}/instances"))
        .json(&serde_json::json!({ "params": params }))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json")
}

/// Registers workflow `code` (any object params) over HTTP, as a client would.
pub async fn register(client: &reqwest::Client, base: &str, code: &str) {
    let put = client
        .put(format!("{base}/v1/workflows/{code}"))
        .json(&serde_json::json!({"name": code, "params_schema": {"type": "object"}}))
        .send()
        .await
        .expect("register");
    assert!(
        put.status().is_success(),
        "register {code}: {}",
        put.status()
    );
}
