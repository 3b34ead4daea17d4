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

/// Makes a token for `tenant` with every scope it needs here, straight in the data directory.
fn token(dir: &std::path::Path, tenant: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args([
            "tokens",
            "create",
            "--tenant",
            tenant,
            "--scope",
            "start,admin",
        ])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("flowgate tokens create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The stall the probe found: hundreds of schedules that fire far in the future, listed
/// over and over by one tenant at once. Fire times are stored, never worked out at a read,
/// so `/healthz` and another tenant's starts keep answering within 100 ms; a schedule
/// that never fires is refused at once, and the limit per workflow holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_far_future_schedules_stalls_no_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hostile = token(dir.path(), "hostile");
    let other = token(dir.path(), "other");
    let client = flowgate_tests::client();
    let server = Server::start(BIN, dir.path(), &[], &[]);
    server.wait_healthy(&client).await;
    let base = server.base.clone();
    let def = json!({"name": "w", "params_schema": {"type": "object"}});
    for (who, code) in [
        (&hostile, "w1"),
        (&hostile, "w2"),
        (&hostile, "w3"),
        (&other, "fast"),
    ] {
        let put = client
            .put(format!("{base}/v1/workflows/{code}"))
            .bearer_auth(who)
            .json(&def)
            .send()
            .await
            .expect("put workflow");
        assert_eq!(put.status(), 201);
    }
    let sparse = [
        json!({"cron": "0 0 0 29 2 ? *"}),
        json!({"cron": "0 0 0 1 1 ? 2031"}),
        json!({"cron": "0 0 0 L-3 2 ? 2030"}),
        json!({"cron": "0 0 12 LW 12 ? 2030"}),
        json!({"at": "2031-06-01T00:00:00", "timezone": "Australia/Sydney"}),
    ];
    for w in ["w1", "w2", "w3"] {
        for i in 0..100 {
            let put = client
                .put(format!("{base}/v1/workflows/{w}/schedules/s{i}"))
                .bearer_auth(&hostile)
                .json(&sparse[i % sparse.len()])
                .send()
                .await
                .expect("put schedule");
            assert_eq!(
                put.status(),
                201,
                "{}",
                put.text().await.unwrap_or_default()
            );
        }
    }
    // The 101st of a workflow, and one that never fires, are refused with why.
    let over = client
        .put(format!("{base}/v1/workflows/w1/schedules/s100"))
        .bearer_auth(&hostile)
        .json(&sparse[0])
        .send()
        .await
        .expect("put");
    assert_eq!(over.status(), 400);
    assert!(
        over.text()
            .await
            .unwrap_or_default()
            .contains("the most one")
    );
    let began = std::time::Instant::now();
    let never = client
        .put(format!("{base}/v1/workflows/w2/schedules/never"))
        .bearer_auth(&hostile)
        .json(&json!({"cron": "0 0 0 30 2 ? *"}))
        .send()
        .await
        .expect("put");
    assert_eq!(never.status(), 400);
    assert!(
        never
            .text()
            .await
            .unwrap_or_default()
            .contains("never fires")
    );
    let refused_in = began.elapsed();

    // Four listers, as the probe ran, without pause, while the others measure.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut listers = Vec::new();
    for n in 0..4 {
        let (client, base, hostile, stop) =
            (client.clone(), base.clone(), hostile.clone(), stop.clone());
        listers.push(tokio::spawn(async move {
            let mut listed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = match n % 4 {
                    3 => format!("{base}/v1/schedules"),
                    w => format!("{base}/v1/workflows/w{}/schedules", w + 1),
                };
                let reply = client.get(url).bearer_auth(&hostile).send().await;
                if reply.is_ok_and(|r| r.status().is_success()) {
                    listed += 1;
                }
            }
            listed
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut health, mut starts) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let t = std::time::Instant::now();
        let h = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("health");
        assert_eq!(h.status(), 200);
        health.push(t.elapsed());
        let t = std::time::Instant::now();
        let s = client
            .post(format!("{base}/v1/workflows/fast/instances"))
            .bearer_auth(&other)
            .header("idempotency-key", format!("k{i}"))
            .json(&json!({"params": {}}))
            .send()
            .await
            .expect("start");
        assert_eq!(s.status(), 202);
        starts.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut listings = 0;
    for l in listers {
        listings += l.await.expect("lister");
    }
    health.sort();
    starts.sort();
    eprintln!(
        "while {listings} listings ran: /healthz max {:?}, starts median {:?} p90 {:?} max {:?}; \
         a never-firing schedule refused in {refused_in:?}",
        health[health.len() - 1],
        starts[starts.len() / 2],
        starts[starts.len() * 9 / 10],
        starts[starts.len() - 1]
    );
    assert!(listings > 30, "the listings ran: {listings}");
    let limit = Duration::from_millis(100);
    assert!(health.iter().all(|t| *t < limit), "{health:?}");
    // A start waits for its fsync; on a shared disk one may be slow now and then, so 90% of
    // them must answer within 100 ms, and every one within a second.
    assert!(starts[starts.len() * 9 / 10] < limit, "{starts:?}");
    assert!(
        starts[starts.len() - 1] < Duration::from_secs(1),
        "{starts:?}"
    );
    assert!(refused_in < Duration::from_secs(1), "{refused_in:?}");
}
