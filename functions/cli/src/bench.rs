//! `flowgate bench`: loads a running server and reports accept throughput and latency,
//! accept-to-created lag, and a final check that nothing was lost or duplicated.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;

use crate::bench_disk;
use crate::bench_plot;

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
struct Accepted {
    request_id: String,
}

#[derive(Debug, Deserialize)]
struct BatchAccepted {
    results: Vec<BatchResult>,
}

#[derive(Debug, Deserialize)]
struct BatchResult {
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
struct InstanceRow {
    request_id: String,
    instance_id: String,
}

#[derive(Debug, Deserialize)]
struct InstancePage {
    items: Vec<InstanceRow>,
    next_cursor: Option<String>,
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

/// Runs the benchmark against `url`.
pub async fn run(client: &reqwest::Client, url: &str, args: BenchArgs) -> Result<ExitCode> {
    if let Some(n) = args.schedules {
        return super::bench_schedules::run(client, url, n.into(), args.drain_timeout).await;
    }
    if args.dispatch {
        return super::bench_dispatch::run(client, url, &args).await;
    }
    let client = client.clone();
    let workflow = register(&client, url).await?;
    println!(
        "workflow {workflow}; {} per phase; machine: {} cores",
        humantime::format_duration(args.duration),
        num_cpus()
    );
    let disk = bench_disk::known_dir(&args.data_dir);
    let fsyncs = measure_fsync(&args, disk.as_deref());
    let before = disk.as_deref().map(flowgate_embedded::FileSizes::of);
    let mut phases = run_phases(&client, url, &workflow, &args, disk.as_deref(), fsyncs).await;
    if args.batch > 0 {
        phases.push(batch_phase(&client, url, &workflow, &args, disk.as_deref()).await);
    }
    let load_end = Instant::now();
    if let Some(file) = &args.plot {
        let closed: Vec<&Phase> = phases
            .iter()
            .skip(usize::from(args.lag_rate > 0))
            .filter(|p| p.shape == Shape::Start)
            .collect();
        match bench_plot::draw(file, &closed) {
            Ok(()) => println!("plot: {}", file.display()),
            Err(e) => eprintln!("plot: cannot draw {}: {e}", file.display()),
        }
    }
    let backlog_drained = disk.as_deref().map(|dir| {
        let dir = dir.to_owned();
        let timeout = args.drain_timeout;
        tokio::task::spawn_blocking(move || bench_disk::wait_drained(&dir, load_end, timeout))
    });
    ceiling_phase(&client, url, &args, &phases).await;
    let accepted: HashSet<String> = phases
        .iter()
        .flat_map(|p| p.accepted.iter().cloned())
        .collect();
    let (instances, drained_in) = drain(
        &client,
        url,
        &workflow,
        accepted.len(),
        args.drain_timeout,
        load_end,
    )
    .await?;
    let lag_from: HashSet<String> = match phases.first() {
        Some(paced) if args.lag_rate > 0 => paced.accepted.iter().cloned().collect(),
        _ => accepted.clone(),
    };
    let lags = sample_lag(&client, url, &lag_from, args.lag_sample).await;
    println!();
    report_lag(&args, &lags);
    if let Some(Ok(drained)) = match backlog_drained {
        Some(task) => Some(task.await),
        None => None,
    } {
        let what = "backlog (messages not yet settled) empty";
        report_after_load(&args, what, drained);
    }
    let what = "every instance listed (the listing's own time included)";
    report_after_load(&args, what, drained_in);
    if let (Some(dir), Some(before)) = (disk.as_deref(), before) {
        report_growth(dir, before, accepted.len());
    }
    let ok = verify(&accepted, &instances);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Registers a fresh workflow for this run; answers its code.
async fn register(client: &reqwest::Client, url: &str) -> Result<String> {
    register_with(client, url, None).await
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

/// The disk's fsync rate where the server keeps its data, printed; `None` when unknown.
fn measure_fsync(args: &BenchArgs, disk: Option<&std::path::Path>) -> Option<f64> {
    let Some(dir) = disk else {
        println!(
            "no database in {}: fsync rate, backlog and WAL size not measured \
             (pass the server's --data-dir)",
            args.data_dir.display()
        );
        return None;
    };
    match bench_disk::fsync_rate(dir) {
        Ok(rate) => {
            println!(
                "fsync rate of {} (a 4 KiB append and fdatasync, one at a time): {rate:.0}/s",
                dir.display()
            );
            Some(rate)
        }
        Err(e) => {
            println!("could not measure the fsync rate in {}: {e}", dir.display());
            None
        }
    }
}

/// How much the database grew for the requests of this run.
fn report_growth(dir: &std::path::Path, before: flowgate_embedded::FileSizes, requests: usize) {
    let after = flowgate_embedded::FileSizes::of(dir);
    let grown = after.db.saturating_sub(before.db);
    let per_million = grown as f64 * 1_000_000.0 / requests.max(1) as f64;
    println!(
        "database file grew {:.1} MiB for {requests} requests ({:.0} MiB per million); \
         WAL now {:.1} MiB",
        bench_disk::mib(grown),
        bench_disk::mib(per_million as u64),
        bench_disk::mib(after.wal)
    );
}

/// The paced phase (when `--lag-rate` is set), then one closed-loop phase per concurrency,
/// each sampled each second where the data directory is known.
async fn run_phases(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    args: &BenchArgs,
    disk: Option<&std::path::Path>,
    fsyncs: Option<f64>,
) -> Vec<Phase> {
    let mut phases = Vec::new();
    if args.lag_rate > 0 {
        phases.push(paced_phase(client, url, workflow, args).await);
    }
    for &concurrency in &args.concurrency {
        let sampler = disk.and_then(bench_disk::Sampler::start);
        let phase = load(
            client,
            url,
            workflow,
            Shape::Start,
            concurrency.max(1),
            args.duration,
            None,
        )
        .await;
        let samples = sampler.map(bench_disk::Sampler::stop).unwrap_or_default();
        let mut phase = phase;
        phase.backlog = samples.iter().map(|s| s.backlog).collect();
        report_phase(&phase);
        if let Some(fsyncs) = fsyncs {
            let rate = phase.rate();
            println!(
                "  {:.2}x the fsync rate ({rate:.0} accepts/s over {fsyncs:.0} fsyncs/s)",
                rate / fsyncs
            );
        }
        bench_disk::report_samples(&samples);
        phases.push(phase);
    }
    phases
}

/// The batch phase: `--batch-concurrency` workers each sending batches of `--batch`
/// starts, closed loop, sampled each second where the data directory is known.
async fn batch_phase(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    args: &BenchArgs,
    disk: Option<&std::path::Path>,
) -> Phase {
    let sampler = disk.and_then(bench_disk::Sampler::start);
    let mut phase = load(
        client,
        url,
        workflow,
        Shape::Batch(args.batch.into()),
        args.batch_concurrency.max(1),
        args.duration,
        None,
    )
    .await;
    let samples = sampler.map(bench_disk::Sampler::stop).unwrap_or_default();
    phase.backlog = samples.iter().map(|s| s.backlog).collect();
    report_phase(&phase);
    bench_disk::report_samples(&samples);
    phase
}

/// The 404 ceiling: what the HTTP stack alone answers, from as many workers as the busiest
/// start phase, measured after the start phases in the same run; and how close the start
/// phases came to it.
async fn ceiling_phase(client: &reqwest::Client, url: &str, args: &BenchArgs, phases: &[Phase]) {
    let concurrency = args.concurrency.iter().copied().max().unwrap_or(64).max(1);
    let ceiling = load(
        client,
        url,
        "",
        Shape::NotFound,
        concurrency,
        args.duration,
        None,
    )
    .await;
    report_phase(&ceiling);
    let best = phases
        .iter()
        .filter(|p| p.shape == Shape::Start)
        .map(Phase::rate)
        .fold(0.0, f64::max);
    if ceiling.rate() > 0.0 {
        println!(
            "  the best start phase ({best:.0} accepts/s) is {:.0}% of the 404 ceiling",
            100.0 * best / ceiling.rate()
        );
    }
}

fn report_lag(args: &BenchArgs, lags: &[u64]) {
    println!(
        "accept-to-created lag ({}, sample of {}): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        if args.lag_rate > 0 {
            format!("paced phase at {}/s", args.lag_rate)
        } else {
            "all phases".to_owned()
        },
        lags.len(),
        ms(percentile(lags, 50.0)),
        ms(percentile(lags, 99.0)),
        ms(lags.last().copied().unwrap_or(0))
    );
}

/// How long after the load `what` happened, or that it did not within the drain timeout.
fn report_after_load(args: &BenchArgs, what: &str, after: Option<Duration>) {
    match after {
        Some(d) => println!(
            "{what} {:.0} ms after the load stopped",
            d.as_secs_f64() * 1000.0
        ),
        None => println!(
            "{what}: NOT within {}",
            humantime::format_duration(args.drain_timeout)
        ),
    }
}

/// Exactly one instance per accepted request: none missing, duplicated or unexpected.
fn verify(accepted: &HashSet<String>, instances: &[InstanceRow]) -> bool {
    let mut seen_requests = HashSet::new();
    let duplicates = instances
        .iter()
        .filter(|row| !seen_requests.insert(row.request_id.clone()))
        .count();
    let instance_ids: HashSet<&str> = instances.iter().map(|i| i.instance_id.as_str()).collect();
    let missing = accepted.difference(&seen_requests).count();
    let unexpected = seen_requests.difference(accepted).count();
    println!(
        "verification: {} accepted, {} instances ({} distinct ids), {} missing, {} duplicated, {} unexpected",
        accepted.len(),
        instances.len(),
        instance_ids.len(),
        missing,
        duplicates,
        unexpected
    );
    let ok =
        missing == 0 && duplicates == 0 && unexpected == 0 && instance_ids.len() == instances.len();
    println!(
        "{}",
        if ok {
            "OK: nothing lost, nothing duplicated"
        } else {
            "FAILED"
        }
    );
    ok
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
struct Tally {
    answered: usize,
    accepted: Vec<String>,
    /// (second of the phase, answer time in µs) of each successful request.
    latencies: Vec<(usize, u64)>,
    errors: HashMap<u16, usize>,
}

/// One request's outcome: the request ids it accepted (none for a 404 probe), or the status
/// of its failure (0: no answer), with the refused starts of a batch by status.
struct Answer {
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
async fn send(
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

/// Pages through the workflow's instances until every accepted request has one, or time runs
/// out. Returns every instance seen and how long after the load the count was reached.
async fn drain(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    expected: usize,
    timeout: Duration,
    load_end: Instant,
) -> Result<(Vec<InstanceRow>, Option<Duration>)> {
    let give_up = Instant::now() + timeout;
    loop {
        let instances = list_all(client, url, workflow).await?;
        if instances.len() >= expected {
            return Ok((instances, Some(load_end.elapsed())));
        }
        if Instant::now() >= give_up {
            return Ok((instances, None));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn list_all(client: &reqwest::Client, url: &str, workflow: &str) -> Result<Vec<InstanceRow>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        // Cursors are URL-safe base64, so they need no escaping.
        let query = match &cursor {
            Some(c) => format!("limit=100&cursor={c}"),
            None => "limit=100".to_owned(),
        };
        let request = client.get(format!("{url}/v1/workflows/{workflow}/instances?{query}"));
        let page: InstancePage = request.send().await?.error_for_status()?.json().await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// Server-side accept-to-created lag (`created` event time minus `accepted_at`) of a sample
/// of requests, sorted, in microseconds.
async fn sample_lag(
    client: &reqwest::Client,
    url: &str,
    accepted: &HashSet<String>,
    sample: usize,
) -> Vec<u64> {
    sample_stage_lag(client, url, accepted, sample, "accepted", "created").await
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
