//! `flowgate bench`: loads a running server and reports accept throughput and latency,
//! accept-to-created lag, and a final check that nothing was lost or duplicated.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::bench_disk;
use crate::bench_plot;

pub use crate::bench_kit::BenchArgs;
use crate::bench_kit::{
    Phase, Result, Shape, load, ms, num_cpus, paced_phase, percentile, register_with, report_phase,
    sample_stage_lag,
};

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
