//! `flowgate dlq` end to end on the embedded backend: the real binary against the data
//! directory of a running `flowgate serve`, with its exit codes (0 done, 1 some failed,
//! 2 bad usage or configuration).

#![cfg(feature = "faults")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use flowgate_tests::binary::{Server, register, request_view, settle, submit};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

fn dlq(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("dlq")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("FLOWGATE_BACKEND")
        .output()
        .expect("run flowgate dlq")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn json_of(out: &Output) -> Value {
    assert_eq!(
        code(out),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_shows_replays_archives_and_restores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = flowgate_tests::client();
    let broken = Server::start(
        BIN,
        dir.path(),
        &[],
        &[("FLOWGATE_FAULTS", "consumer.create=1.0:permanent")],
    );
    broken.wait_healthy(&client).await;
    register(&client, &broken.base, "ops").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let r = submit(&client, &broken.base, "ops", json!({"n": n})).await;
        ids.push(r["request_id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let view = settle(&client, &broken.base, id, Duration::from_secs(20)).await;
        assert_eq!(view["status"], "DEAD", "{view}");
    }
    assert!(broken.terminate().await.success());

    // The cause is fixed: the server runs again, and the operator works beside it.
    let server = Server::start(BIN, dir.path(), &[], &[]);
    server.wait_healthy(&client).await;
    let d = dir.path();

    let listed = json_of(&dlq(d, &["list", "--json", "--workflow", "ops"]));
    assert_eq!(listed.as_array().expect("array").len(), 5);
    assert_eq!(listed[0]["error_kind"], "permanent");
    let table = dlq(d, &["list", "--error", "permanent"]);
    assert_eq!(code(&table), 0);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("REQUEST_ID"), "{text}");
    assert_eq!(text.lines().count(), 6, "{text}");

    let shown = dlq(d, &["show", &ids[0]]);
    assert_eq!(code(&shown), 0);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("history:") && text.contains("dead_lettered"),
        "{text}"
    );
    assert_eq!(code(&dlq(d, &["show", "no-such-request"])), 1);

    let dry = json_of(&dlq(d, &["replay", "--dry-run", "--json"]));
    assert_eq!(
        (dry["dry_run"].clone(), dry["replayed"].clone()),
        (json!(true), json!(5))
    );
    assert_eq!(
        json_of(&dlq(d, &["list", "--json"]))
            .as_array()
            .map(Vec::len),
        Some(5)
    );

    let two = json_of(&dlq(
        d,
        &["replay", "--max", "2", "--rate", "100/s", "--json"],
    ));
    assert_eq!(two["replayed"], 2, "{two}");

    let archive = d.join("letters.jsonl");
    let archived = dlq(d, &["archive", "--out", archive.to_str().expect("path")]);
    assert_eq!(
        code(&archived),
        0,
        "{}",
        String::from_utf8_lossy(&archived.stderr)
    );
    let lines = std::fs::read_to_string(&archive).expect("archive file");
    assert_eq!(lines.lines().count(), 3);
    assert_eq!(json_of(&dlq(d, &["list", "--json"])), json!([]));
    let archived_ids: Vec<String> = lines
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("line");
            v["record"]["request_id"].as_str().expect("id").to_owned()
        })
        .collect();
    for id in &archived_ids {
        assert_eq!(
            request_view(&client, &server.base, id).await["status"],
            "ARCHIVED"
        );
    }

    let restored = dlq(d, &["restore", archive.to_str().expect("path")]);
    assert_eq!(
        code(&restored),
        0,
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let rest = dlq(d, &["replay"]);
    assert_eq!(code(&rest), 0, "{}", String::from_utf8_lossy(&rest.stderr));
    assert!(String::from_utf8_lossy(&rest.stderr).contains("replayed 3"));

    for id in &ids {
        let view = settle(&client, &server.base, id, Duration::from_secs(20)).await;
        assert_eq!(view["status"], "CREATED", "{view}");
    }
    assert!(server.terminate().await.success());

    // Bad usage and configuration exit 2, with the fix in the message.
    let missing = Command::new(BIN)
        .args(["dlq", "list", "--data-dir"])
        .arg(d.join("nowhere"))
        .output()
        .expect("run");
    assert_eq!(code(&missing), 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--data-dir"));
    assert_eq!(code(&dlq(d, &["replay", "--rate", "fast"])), 2);
    assert_eq!(code(&dlq(d, &["replay", "--max", "0"])), 2);
    assert_eq!(code(&dlq(d, &["list", "--older-than", "soon"])), 2);
    let nowhere = d.join("no-such-dir").join("out.jsonl");
    let unwritable = dlq(d, &["archive", "--out", nowhere.to_str().expect("path")]);
    assert_eq!(code(&unwritable), 2);
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("cannot open"));
    let garbage = d.join("garbage.jsonl");
    std::fs::write(&garbage, "{\"not\": \"a letter\"}\n").expect("write");
    let bad = dlq(d, &["restore", garbage.to_str().expect("path")]);
    assert_eq!(code(&bad), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 1"));
}
