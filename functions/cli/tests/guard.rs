//! The real binary against hostile clients and careless starts: two servers racing on a
//! fresh directory, slow and idle connections, too many connections, a non-loopback address
//! without tokens, and tokens with scopes and revocation.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use flowgate_tests::binary::{Server, free_port, register};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_started_together_on_a_fresh_directory_both_run() {
    let client = flowgate_tests::client();
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = Server::start(BIN, dir.path(), &[], &[]);
        let second = Server::start(BIN, dir.path(), &[], &[]);
        first.wait_healthy(&client).await;
        second.wait_healthy(&client).await;
    }
}

/// Reads until the server closes the connection, or `within` passes; answers what was read
/// and whether it closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_connections_are_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let args = [
        "--header-read-timeout",
        "1s",
        "--idle-timeout",
        "2s",
        "--max-connections",
        "3",
    ];
    let server = Server::start(BIN, dir.path(), &args, &[]);
    server.wait_healthy(&client).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Partial headers: closed after the header-read timeout.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(
        closed,
        "a connection with partial headers was held past the timeout"
    );

    // Kept alive but silent: closed too.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed,
        "an idle keep-alive connection was held past the timeouts"
    );

    // Past the cap: a 503 problem, at once, and the server still answers once they go.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut surplus = TcpStream::connect(&addr).expect("connect");
    let (answer, closed) = read_until_closed(&mut surplus, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1") && closed, "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = client.get(format!("{}/healthz", server.base)).send().await;
    assert_eq!(health.expect("health").status(), 200);
}

#[test]
fn a_non_loopback_address_without_tokens_is_refused_unless_said_out_loud() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = format!("0.0.0.0:{}", free_port());
    let out = Command::new(BIN)
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flowgate tokens create") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
}

fn tokens(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("tokens")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run flowgate tokens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_the_tenant_and_scopes_and_revocation_takes_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let server = Server::start(BIN, dir.path(), &[], &[]);
    server.wait_healthy(&client).await;
    let base = server.base.clone();
    // No token yet, on loopback: open, as tenant `default`.
    register(&client, &base, "open").await;

    let made = tokens(
        dir.path(),
        &[
            "create",
            "--tenant",
            "acme",
            "--scope",
            "start,admin",
            "--json",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).expect("json");
    let admin = made["token"].as_str().expect("token").to_owned();
    let reader = tokens(dir.path(), &["create", "--tenant", "acme"]);
    let reader = String::from_utf8_lossy(&reader.stdout).trim().to_owned();
    let listed = tokens(dir.path(), &["list", "--json"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        !listed.contains(&admin) && !listed.contains("hash"),
        "{listed}"
    );

    // Once a token exists, every request needs one (within the two-second cache).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let anonymous = client
        .get(format!("{base}/v1/workflows/open"))
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let def = json!({"name": "orders", "params_schema": {"type": "object"}});
    let put = client
        .put(format!("{base}/v1/workflows/orders"))
        .bearer_auth(&admin)
        .json(&def)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let body: serde_json::Value = put.json().await.expect("json");
    assert_eq!(body["tenant"], "acme", "the token decides the tenant");
    let forbidden = client
        .put(format!("{base}/v1/workflows/orders"))
        .bearer_auth(&reader)
        .json(&def)
        .send()
        .await
        .expect("put");
    assert_eq!(
        forbidden.status(),
        403,
        "a start-only token cannot register"
    );
    let read = client
        .get(format!("{base}/v1/workflows/orders"))
        .header("token", &reader)
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200, "the `token` header works too");
    let wrong = client
        .get(format!("{base}/v1/workflows/orders"))
        .bearer_auth("fgt_not_a_token")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 401);

    // A token with a rate of its own is held to it: 429 with Retry-After past it.
    let slow = tokens(dir.path(), &["create", "--tenant", "acme", "--rate", "2"]);
    let slow = String::from_utf8_lossy(&slow.stdout).trim().to_owned();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client
            .get(format!("{base}/v1/workflows/orders"))
            .bearer_auth(&slow)
            .send()
            .await
            .expect("get");
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);

    let id = made["id"].as_str().expect("id");
    assert!(tokens(dir.path(), &["revoke", id]).status.success());
    assert_eq!(
        tokens(dir.path(), &["revoke", "nope"]).status.code(),
        Some(1)
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let revoked = client
        .get(format!("{base}/v1/workflows/orders"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get");
    assert_eq!(revoked.status(), 401, "a revoked token stops working");
    assert!(server.terminate().await.success());
}

/// A DolphinScheduler client sends its token in the `token` header: the token decides the
/// tenant; a missing or bad one is a 401 with no envelope, as DolphinScheduler answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dolphinscheduler_door_takes_the_token_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let server = Server::start(BIN, dir.path(), &[], &[]);
    server.wait_healthy(&client).await;
    let base = server.base.clone();
    let token_of = |tenant: &str| {
        let made = tokens(
            dir.path(),
            &["create", "--tenant", tenant, "--scope", "start,admin"],
        );
        String::from_utf8_lossy(&made.stdout).trim().to_owned()
    };
    let (acme, other) = (token_of("acme"), token_of("other"));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let def = json!({"name": "etl", "ds_code": 90210, "params_schema": {"type": "object"}});
    let put = client
        .put(format!("{base}/v1/workflows/etl"))
        .header("token", &acme)
        .json(&def)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);

    let door = format!("{base}/dolphinscheduler/projects/1/executors/start-process-instance");
    // As DolphinScheduler's own api-test posts it: a raw, unencoded body.
    let form = "?&loginUser=User(id=1, userName=admin)&processDefinitionCode=90210\
                &scheduleTime=now,now&failureStrategy=END&warningType=NONE";
    let call = |token: Option<&str>| {
        let mut request = client
            .post(&door)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        if let Some(token) = token {
            request = request.header("token", token);
        }
        request.send()
    };
    let started = call(Some(&acme)).await.expect("post");
    assert_eq!(started.status(), 200);
    let body: serde_json::Value = started.json().await.expect("json");
    assert_eq!(body["code"], 0, "{body}");
    let id = body["data"][0].as_str().expect("a request id").to_owned();
    let view = client
        .get(format!("{base}/v1/requests/{id}"))
        .header("token", &acme)
        .send()
        .await
        .expect("get");
    assert_eq!(view.status(), 200, "the caller can track what it started");

    let theirs: serde_json::Value = call(Some(&other))
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(
        theirs["code"], 50003,
        "another tenant's definition does not exist: {theirs}"
    );
    for token in [None, Some("fgt_not_a_token")] {
        let refused = call(token).await.expect("post");
        assert_eq!(refused.status(), 401);
        let body: serde_json::Value = refused.json().await.expect("json");
        assert!(body.get("code").is_none(), "no envelope: {body}");
    }
    assert!(server.terminate().await.success());
}

/// A blocking connection to `addr` from `source`, a loopback address of its own (Linux
/// routes all of 127.0.0.0/8 to the loopback device).
async fn connect_from(source: &str, addr: &str) -> TcpStream {
    let target: std::net::SocketAddr = addr.parse().expect("addr");
    let local: std::net::SocketAddr = format!("{source}:0").parse().expect("source");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(local).expect("bind the source address");
    let stream = socket
        .connect(target)
        .await
        .expect("connect from the source address");
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// One address holding its share of the slots gets 503 for more; another address is
/// still served, and the address gets slots back as its connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection_slot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let args = [
        "--max-connections",
        "8",
        "--max-connections-per-address",
        "3",
        "--idle-timeout",
        "30s",
    ];
    let server = Server::start(BIN, dir.path(), &args, &[]);
    server.wait_healthy(&client).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", &addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut surplus = connect_from("127.0.0.2", &addr).await;
    surplus
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (answer, closed) = read_until_closed(&mut surplus, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("from this address") && closed, "{answer}");
    // Another address: served.
    let mut other = connect_from("127.0.0.3", &addr).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let (answer, _) = read_until_closed(&mut other, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The address's slots come back when its connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.2", &addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let (answer, _) = read_until_closed(&mut again, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sends raw bytes on a fresh connection; answers the status line's code, the content
/// type, and the body (parsed as JSON).
fn raw_exchange(addr: &str, request: &[u8]) -> (String, String, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("write");
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.get(9..12).unwrap_or("").to_owned();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, content_type, body)
}

/// What the HTTP library answers on its own (a head too large, a target too long, a byte
/// not allowed in a header), and what Flowgate's own tighter limits answer, all come as
/// problem+json. Before, the library's came with an empty body and no content type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_problem_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let server = Server::start(BIN, dir.path(), &[], &[]);
    server.wait_healthy(&client).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let some: String = (0..80).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = "a".repeat(40_000);
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "431".into(),
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(),
            "header-fields-too-large",
        ),
        (
            "431".into(),
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{some}\r\n").into_bytes(),
            "header-fields-too-large",
        ),
        (
            "431".into(),
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: {big}\r\n\r\n").into_bytes(),
            "header-fields-too-large",
        ),
        (
            "414".into(),
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(100_000)).into_bytes(),
            "uri-too-long",
        ),
        (
            "414".into(),
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(50_000)).into_bytes(),
            "uri-too-long",
        ),
        (
            "400".into(),
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-bad: a\x7fb\r\n\r\n".to_vec(),
            "malformed-request",
        ),
        (
            "400".into(),
            b"NOT A REQUEST\r\n\r\n".to_vec(),
            "malformed-request",
        ),
    ];
    for (status, request, kind) in cases {
        let (got, content_type, body) = raw_exchange(&addr, &request);
        assert_eq!(got, status, "{kind}: {body}");
        assert_eq!(content_type, "application/problem+json", "{kind}");
        assert_eq!(
            body["type"],
            format!("urn:flowgate:problem:{kind}"),
            "{body}"
        );
        assert_eq!(body["status"], status.parse::<u16>().expect("a code"));
    }
    // The server still answers.
    let health = client.get(format!("{}/healthz", server.base)).send().await;
    assert_eq!(health.expect("health").status(), 200);
}
