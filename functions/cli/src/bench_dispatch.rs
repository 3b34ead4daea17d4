//! `flowgate bench --dispatch`: every instance handed to a webhook receiver that the bench
//! runs itself. A paced phase (`--lag-rate`) measures created-to-dispatched lag below
//! saturation; a closed-loop phase at the first `--concurrency` level measures dispatches
//! per second. Then every accepted request must have reached the receiver.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::bench_kit::{
    BenchArgs, Result, Shape, load, ms, num_cpus, paced_phase, percentile, register_with,
    report_phase, sample_stage_lag,
};

/// What the receiver saw: deliveries per instance id, and when the last new one came.
#[derive(Default)]
struct Seen {
    per_instance: HashMap<String, u32>,
    raw: u64,
    last_new: Option<Instant>,
}

type Shared = Arc<Mutex<Seen>>;

async fn receive(State(seen): State<Shared>, body: Bytes) -> &'static str {
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["instance_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut seen = seen.lock().expect("lock");
    seen.raw += 1;
    let count = seen.per_instance.entry(id).or_default();
    *count += 1;
    if *count == 1 {
        seen.last_new = Some(Instant::now());
    }
    "ok"
}

/// Starts the receiver on a loopback port; answers its URL.
async fn start_receiver(seen: Shared) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = Router::new().route("/hook", post(receive)).with_state(seen);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// Runs the dispatch benchmark against `url`.
pub async fn run(client: &reqwest::Client, url: &str, args: &BenchArgs) -> Result<ExitCode> {
    let seen: Shared = Arc::default();
    let hook = start_receiver(seen.clone()).await?;
    let target = json!({"type": "webhook", "url": hook, "timeout": "5s"});
    let workflow = register_with(client, url, Some(target))
        .await
        .map_err(|e| {
            format!(
                "{e} (a webhook on this machine needs `flowgate serve --allow-private-targets`)"
            )
        })?;
    let concurrency = args.concurrency.first().copied().unwrap_or(64).max(1);
    println!(
        "workflow {workflow} handing off to {hook}; {} per phase; machine: {} cores",
        humantime::format_duration(args.duration),
        num_cpus()
    );
    let mut accepted = HashSet::new();
    if args.lag_rate > 0 {
        let paced = paced_phase(client, url, &workflow, args).await;
        let ids: HashSet<String> = paced.accepted.into_iter().collect();
        wait_for(&seen, ids.len(), args.drain_timeout).await;
        let lags =
            sample_stage_lag(client, url, &ids, args.lag_sample, "created", "dispatched").await;
        report_lag(&format!("paced phase at {}/s", args.lag_rate), &lags);
        accepted.extend(ids);
    }
    let before = seen.lock().expect("lock").per_instance.len();
    let started = Instant::now();
    let phase = load(
        client,
        url,
        &workflow,
        Shape::Start,
        concurrency,
        args.duration,
        None,
    )
    .await;
    report_phase(&phase);
    let ids: HashSet<String> = phase.accepted.into_iter().collect();
    let drained = wait_for(&seen, before + ids.len(), args.drain_timeout).await;
    let handed = seen.lock().expect("lock").per_instance.len() - before;
    let last = seen.lock().expect("lock").last_new.unwrap_or(started);
    println!(
        "dispatch at concurrency {concurrency}: {handed} instances handed off in {:.2} s: {:.0} dispatches/s{}",
        (last - started).as_secs_f64(),
        handed as f64 / (last - started).as_secs_f64().max(1e-9),
        if drained {
            ""
        } else {
            " (NOT all within the drain timeout)"
        }
    );
    let lags = sample_stage_lag(client, url, &ids, args.lag_sample, "created", "dispatched").await;
    report_lag(
        &format!("saturating phase, concurrency {concurrency}"),
        &lags,
    );
    accepted.extend(ids);
    Ok(if verify(client, url, &accepted, &seen).await {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Waits until the receiver has seen `n` distinct instances; answers whether it did.
async fn wait_for(seen: &Shared, n: usize, timeout: Duration) -> bool {
    let give_up = Instant::now() + timeout;
    while seen.lock().expect("lock").per_instance.len() < n {
        if Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn report_lag(phase: &str, lags: &[u64]) {
    println!(
        "created-to-dispatched lag ({phase}, sample of {}): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        lags.len(),
        ms(percentile(lags, 50.0)),
        ms(percentile(lags, 99.0)),
        ms(lags.last().copied().unwrap_or(0))
    );
}

/// Every accepted request's instance reached the receiver; raw deliveries apart.
async fn verify(
    client: &reqwest::Client,
    url: &str,
    accepted: &HashSet<String>,
    seen: &Shared,
) -> bool {
    let mut instance_ids = HashSet::new();
    for request_id in accepted {
        let view: Value = match client
            .get(format!("{url}/v1/requests/{request_id}"))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        if let Some(id) = view["instance_id"].as_str() {
            instance_ids.insert(id.to_owned());
        }
    }
    let seen = seen.lock().expect("lock");
    let received: HashSet<&String> = seen.per_instance.keys().collect();
    let missing = instance_ids
        .iter()
        .filter(|i| !received.contains(i))
        .count();
    let twice = seen.per_instance.values().filter(|c| **c > 1).count();
    println!(
        "verification: {} accepted, {} distinct instances received, {} raw deliveries, {} received more than once, {} missing",
        accepted.len(),
        received.len(),
        seen.raw,
        twice,
        missing
    );
    let ok = missing == 0 && instance_ids.len() == accepted.len();
    println!(
        "{}",
        if ok {
            "OK: every instance handed off"
        } else {
            "FAILED"
        }
    );
    ok
}
