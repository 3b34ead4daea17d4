//! What every `flowgate bench` mode shares: its options, the load generator, the phases and
//! their reports, percentiles, and the lag sampler. The modes (`bench.rs`, the hand-off, the
//! schedules, the plot) use it; it uses none of them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;

pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Options of `flowgate bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrency levels, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    pub concurrency: Vec<usize>,
    /// How long each phase sends requests.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long to wait, after the load, for every instance to exist.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Offered load (requests/s) of the paced phase that measures accept-to-created lag
    /// below saturation; 0 skips it (lag is then sampled from the saturating phases).
    #[arg(long, default_value_t = 5000)]
    pub lag_rate: u32,
    /// Requests whose records are read to measure accept-to-created lag.
    #[arg(long, default_value_t = 2000)]
    pub lag_sample: usize,
    /// Instead of the accept phases: this many workflows with one schedule each, all due in
    /// the same second; reports how long after it each fire was accepted. At most 1,000,
    /// the most schedules one tenant may keep.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub schedules: Option<u16>,
    /// Instead of the accept phases: hand every instance to a webhook receiver that the bench
    /// runs itself, at the first `--concurrency` level (the server needs
    /// `--allow-private-targets`); reports dispatches/s and created-to-dispatched lag.
    #[arg(long)]
    pub dispatch: bool,
    /// The server's data directory, when it runs on this machine on the embedded backend:
    /// the bench then measures the disk's fsync rate there, samples the queue backlog and the
    /// WAL size each second of the closed-loop phases, and reports the database's growth.
    #[arg(long, env = "FLOWGATE_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    /// Starts per request of the batch phase (`POST .../instances/batch`), which runs after
    /// the closed-loop phases; 0 skips it.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(0..=500))]
    pub batch: u16,
    /// Concurrent batch requests in the batch phase.
    #[arg(long, default_value_t = 8)]
    pub batch_concurrency: usize,
    /// Also draws the closed-loop phases as an SVG at this path: accepts per second, the
    /// answer time's p50 and p99 each second, and the backlog each second.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Accepted {
    request_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchAccepted {
    results: Vec<BatchResult>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchResult {
    status: u16,
    request_id: Option<String>,
}

/// What each request of a phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One start, with its own idempotency key.
    Start,
    /// A batch of this many starts, each with its own key.
    Batch(usize),
    /// A GET of a route that only answers 404: what the HTTP stack alone can answer.
    NotFound,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryRow {
    at: DateTime<Utc>,
    event: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RequestView {
    accepted_at: DateTime<Utc>,
    history: Vec<HistoryRow>,
}

pub(crate) struct Phase {
    pub(crate) shape: Shape,
    pub(crate) concurrency: usize,
    /// Answers counted (a 404 phase's 404s; a start phase's accepted starts).
    pub(crate) answered: usize,
    pub(crate) accepted: Vec<String>,
    pub(crate) latencies_us: Vec<u64>,
    /// Each accepted request's answer time, by the second of the phase it was sent in.
    pub(crate) seconds: Vec<Vec<u64>>,
    /// The backlog sampled each second, where the server's directory is known.
    pub(crate) backlog: Vec<u64>,
    pub(crate) errors: HashMap<u16, usize>,
    pub(crate) elapsed: Duration,
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Registers a fresh workflow for this run, handing off to `target` if given; answers its
/// code.
pub(crate) async fn register_with(
    client: &reqwest::Client,
    url: &str,
    target: Option<serde_json::Value>,
) -> Result<String> {
    let workflow = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let mut body = json!({
        "name": "bench",
        "online": true,
        "params_schema": {"type": "object", "required": ["n"],
            "properties": {"n": {"type": "integer"}}}
    });
    if let Some(target) = target {
        body["target"] = target;
    }
    let put = client
        .put(format!("{url}/v1/workflows/{workflow}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e} (is `flowgate serve` running?)"))?;
    if !put.status().is_success() {
        let status = put.status();
        let detail = put.text().await.unwrap_or_default();
        return Err(format!("registering the bench workflow failed: {status} {detail}").into());
    }
    Ok(workflow)
}

/// The phase paced at `--lag-rate` from 64 workers, reported.
pub(crate) async fn paced_phase(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    args: &BenchArgs,
) -> Phase {
    let phase = load(
        client,
        url,
        workflow,
        Shape::Start,
        64,
        args.duration,
        Some(args.lag_rate),
    )
    .await;
    print!("paced at {}/s, ", args.lag_rate);
    report_phase(&phase);
    phase
}

pub(crate) fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Sends requests of `shape` from `concurrency` workers for `duration`: as fast as answers
/// come (closed loop), or paced to `rate` requests per second in all.
pub(crate) async fn load(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    shape: Shape,
    concurrency: usize,
    duration: Duration,
    rate: Option<u32>,
) -> Phase {
    let endpoint = Arc::new(match shape {
        Shape::Start => format!("{url}/v1/workflows/{workflow}/instances"),
        Shape::Batch(_) => format!("{url}/v1/workflows/{workflow}/instances/batch"),
        Shape::NotFound => format!("{url}/v1/no-such-route"),
    });
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        let pace = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / f64::from(r.max(1))));
        workers.spawn(async move {
            let mut ticker = pace.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut tally = Tally::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                n += 1;
                let t0 = Instant::now();
                let answer = send(&client, &endpoint, shape, worker, n).await;
                let second = (t0 - started).as_secs() as usize;
                tally.count(answer, second, t0.elapsed().as_micros() as u64);
            }
            tally
        });
    }
    let mut phase = Phase {
        shape,
        concurrency,
        answered: 0,
        accepted: Vec::new(),
        latencies_us: Vec::new(),
        seconds: Vec::new(),
        backlog: Vec::new(),
        errors: HashMap::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(Ok(tally)) = workers.join_next().await {
        phase.answered += tally.answered;
        phase.accepted.extend(tally.accepted);
        for (second, us) in tally.latencies {
            if phase.seconds.len() <= second {
                phase.seconds.resize_with(second + 1, Vec::new);
            }
            phase.seconds[second].push(us);
        }
        for (k, v) in tally.errors {
            *phase.errors.entry(k).or_default() += v;
        }
    }
    phase.elapsed = started.elapsed();
    // Every answer time, whatever its second, for the phase's percentiles.
    phase.latencies_us = phase.seconds.concat();
    phase.latencies_us.sort_unstable();
    phase
}

/// What one worker saw.
#[derive(Default)]
pub(crate) struct Tally {
    answered: usize,
    accepted: Vec<String>,
    /// (second of the phase, answer time in µs) of each successful request.
    latencies: Vec<(usize, u64)>,
    errors: HashMap<u16, usize>,
}

/// One request's outcome: the request ids it accepted (none for a 404 probe), or the status
/// of its failure (0: no answer), with the refused starts of a batch by status.
pub(crate) struct Answer {
    accepted: std::result::Result<Vec<String>, u16>,
    refused: Vec<u16>,
}

impl Tally {
    fn count(&mut self, answer: Answer, second: usize, us: u64) {
        for status in answer.refused {
            *self.errors.entry(status).or_default() += 1;
        }
        match answer.accepted {
            Ok(ids) => {
                self.answered += ids.len().max(1);
                self.accepted.extend(ids);
                self.latencies.push((second, us));
            }
            Err(status) => *self.errors.entry(status).or_default() += 1,
        }
    }
}

/// Sends the `n`th request of `worker`, each start with a key of its own.
pub(crate) async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    shape: Shape,
    worker: usize,
    n: u64,
) -> Answer {
    let key = |i: usize| format!("{worker}-{n}-{i}-{}", uuid::Uuid::now_v7().simple());
    let request = match shape {
        Shape::Start => client
            .post(endpoint)
            .header("Idempotency-Key", key(0))
            .json(&json!({"params": {"n": n}})),
        Shape::Batch(size) => {
            let starts: Vec<_> = (0..size)
                .map(|i| json!({"idempotency_key": key(i), "params": {"n": n}}))
                .collect();
            client.post(endpoint).json(&json!({ "starts": starts }))
        }
        Shape::NotFound => client.get(endpoint),
    };
    let failed = |status| Answer {
        accepted: Err(status),
        refused: Vec::new(),
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) => return failed(0),
    };
    let status = response.status();
    match shape {
        Shape::NotFound if status == reqwest::StatusCode::NOT_FOUND => {
            let _ = response.bytes().await;
            Answer {
                accepted: Ok(Vec::new()),
                refused: Vec::new(),
            }
        }
        Shape::Start if status.is_success() => match response.json::<Accepted>().await {
            Ok(body) => Answer {
                accepted: Ok(vec![body.request_id]),
                refused: Vec::new(),
            },
            Err(_) => failed(status.as_u16()),
        },
        Shape::Batch(_) if status.is_success() => match response.json::<BatchAccepted>().await {
            Ok(body) => {
                let (ok, refused): (Vec<_>, Vec<_>) = body
                    .results
                    .into_iter()
                    .partition(|r| r.status < 300 && r.request_id.is_some());
                Answer {
                    accepted: Ok(ok.into_iter().filter_map(|r| r.request_id).collect()),
                    refused: refused.into_iter().map(|r| r.status).collect(),
                }
            }
            Err(_) => failed(status.as_u16()),
        },
        _ => failed(status.as_u16()),
    }
}

impl Phase {
    /// Starts accepted (or 404s answered) per second over the phase.
    pub(crate) fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }
}

pub(crate) fn report_phase(p: &Phase) {
    let what = match p.shape {
        Shape::Start => format!("concurrency {:>4}", p.concurrency),
        Shape::Batch(size) => format!("batches of {size}, concurrency {}", p.concurrency),
        Shape::NotFound => format!("404 ceiling, concurrency {}", p.concurrency),
    };
    let (unit, answer) = match p.shape {
        Shape::Start => ("accepts/s", "answer"),
        Shape::Batch(_) => ("starts/s", "batch answer"),
        Shape::NotFound => ("404s/s", "answer"),
    };
    println!(
        "{what}: {:>7} answered  {:>8.0} {unit}  {answer} p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:?}",
        p.answered,
        p.rate(),
        ms(percentile(&p.latencies_us, 50.0)),
        ms(percentile(&p.latencies_us, 99.0)),
        p.errors
    );
}

/// Server-side lag from stage `from` (`accepted`, or a history event) to history event `to`
/// of a sample of requests, sorted, in microseconds.
pub(crate) async fn sample_stage_lag(
    client: &reqwest::Client,
    url: &str,
    accepted: &HashSet<String>,
    sample: usize,
    from: &str,
    to: &str,
) -> Vec<u64> {
    let step = (accepted.len() / sample.max(1)).max(1);
    let mut lags = Vec::new();
    for request_id in accepted.iter().step_by(step).take(sample) {
        let Ok(resp) = client
            .get(format!("{url}/v1/requests/{request_id}"))
            .send()
            .await
        else {
            continue;
        };
        let Ok(view) = resp.json::<RequestView>().await else {
            continue;
        };
        let start = match from {
            "accepted" => Some(view.accepted_at),
            event => view.history.iter().find(|h| h.event == event).map(|h| h.at),
        };
        let end = view.history.iter().find(|h| h.event == to).map(|h| h.at);
        if let (Some(start), Some(end)) = (start, end) {
            let lag = (end - start).num_microseconds().unwrap_or(0).max(0);
            lags.push(lag as u64);
        }
    }
    lags.sort_unstable();
    lags
}
