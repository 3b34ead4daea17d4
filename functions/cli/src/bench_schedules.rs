//! `flowgate bench --schedules N`: N workflows with one schedule each, all due in the same
//! second. Reports how long after that second each fire was accepted, and checks that every
//! schedule fired exactly once, for that second.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::bench_kit::{num_cpus, percentile};

/// Errors cross tasks here, so they must be `Send`.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Requests in flight while setting up and reading back.
const IN_FLIGHT: usize = 64;

#[derive(Debug, Deserialize)]
struct Row {
    request_id: String,
    logical_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct RequestView {
    accepted_at: DateTime<Utc>,
}

/// What one schedule's workflow holds after the due second.
enum Outcome {
    /// One instance for the due second, accepted this long after it (µs).
    Fired(u64),
    /// No instance yet.
    Missing,
    /// More than one instance, or one for another date.
    Wrong(String),
}

/// Runs the schedule benchmark against `url`.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    wait: Duration,
) -> crate::bench_kit::Result<ExitCode> {
    measure(client, url, n, wait)
        .await
        .map_err(|e| e.to_string().into())
}

async fn measure(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    wait: Duration,
) -> Result<ExitCode> {
    let prefix = format!(
        "sbench-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let codes: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("{prefix}-{i}")).collect());
    println!(
        "{n} schedules, one per workflow, all due in one second; machine: {} cores",
        num_cpus()
    );
    let started = Instant::now();
    for_each(client, url, &codes, register).await?;
    let setup = started.elapsed();
    // Creating the schedules takes about as long as registering the workflows did.
    let due = (Utc::now() + setup * 2 + Duration::from_secs(3)).trunc_subsecs(0);
    let at = due.format("%Y-%m-%dT%H:%M:%S").to_string();
    for_each(client, url, &codes, move |c, u, w| {
        schedule(c, u, w, at.clone())
    })
    .await?;
    println!(
        "set up in {:.1} s; due at {due}",
        started.elapsed().as_secs_f64()
    );
    let outcomes = collect(client, url, &codes, due, wait).await?;
    Ok(report(&outcomes))
}

/// Runs `call` for every workflow code, [`IN_FLIGHT`] at a time; fails on the first error.
async fn for_each<F, Fut>(
    client: &reqwest::Client,
    url: &str,
    codes: &Arc<Vec<String>>,
    call: F,
) -> Result<()>
where
    F: Fn(reqwest::Client, String, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let mut running = JoinSet::new();
    for code in codes.iter() {
        if running.len() >= IN_FLIGHT {
            running.join_next().await.expect("a task")??;
        }
        running.spawn(call.clone()(client.clone(), url.to_owned(), code.clone()));
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

async fn register(client: reqwest::Client, url: String, code: String) -> Result<()> {
    let body =
        json!({"name": "schedule bench", "online": true, "params_schema": {"type": "object"}});
    put(&client, format!("{url}/v1/workflows/{code}"), body).await
}

async fn schedule(client: reqwest::Client, url: String, code: String, at: String) -> Result<()> {
    let body = json!({"at": at, "params": {}});
    put(
        &client,
        format!("{url}/v1/workflows/{code}/schedules/once"),
        body,
    )
    .await
}

async fn put(client: &reqwest::Client, to: String, body: Value) -> Result<()> {
    let answer = client.put(&to).json(&body).send().await?;
    if !answer.status().is_success() {
        return Err(format!("PUT {to}: {}", answer.status()).into());
    }
    Ok(())
}

/// Waits for the due second, then reads every workflow's instances until each has fired
/// or `wait` has passed since the due second.
async fn collect(
    client: &reqwest::Client,
    url: &str,
    codes: &Arc<Vec<String>>,
    due: DateTime<Utc>,
    wait: Duration,
) -> Result<Vec<Outcome>> {
    let until_due = (due - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until_due + Duration::from_secs(2)).await;
    let give_up = Instant::now() + wait;
    let mut outcomes: Vec<Option<Outcome>> = (0..codes.len()).map(|_| None).collect();
    loop {
        let pending: Vec<usize> = (0..codes.len())
            .filter(|&i| matches!(outcomes[i], None | Some(Outcome::Missing)))
            .collect();
        if pending.is_empty() || Instant::now() >= give_up {
            return Ok(outcomes
                .into_iter()
                .map(|o| o.unwrap_or(Outcome::Missing))
                .collect());
        }
        let mut running = JoinSet::new();
        for i in pending {
            if running.len() >= IN_FLIGHT {
                let (i, outcome) = running.join_next().await.expect("a task")?;
                outcomes[i] = Some(outcome?);
            }
            let (client, url, code) = (client.clone(), url.to_owned(), codes[i].clone());
            running.spawn(async move { (i, outcome_of(&client, &url, &code, due).await) });
        }
        while let Some(done) = running.join_next().await {
            let (i, outcome) = done?;
            outcomes[i] = Some(outcome?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn outcome_of(
    client: &reqwest::Client,
    url: &str,
    code: &str,
    due: DateTime<Utc>,
) -> Result<Outcome> {
    let page: Page = client
        .get(format!("{url}/v1/workflows/{code}/instances?limit=10"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let row = match page.items.as_slice() {
        [] => return Ok(Outcome::Missing),
        [one] if one.logical_date == Some(due) => one,
        more => {
            return Ok(Outcome::Wrong(format!(
                "{code}: {} instances, dates {:?}",
                more.len(),
                more.iter().map(|r| r.logical_date).collect::<Vec<_>>()
            )));
        }
    };
    let view: RequestView = client
        .get(format!("{url}/v1/requests/{}", row.request_id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let lag = (view.accepted_at - due)
        .num_microseconds()
        .unwrap_or(0)
        .max(0);
    Ok(Outcome::Fired(lag as u64))
}

/// Prints the figures; answers failure unless every schedule fired exactly once.
fn report(outcomes: &[Outcome]) -> ExitCode {
    let mut lags: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Fired(lag) => Some(*lag),
            _ => None,
        })
        .collect();
    lags.sort_unstable();
    let missing = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Missing))
        .count();
    let wrong: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Wrong(why) => Some(why),
            _ => None,
        })
        .collect();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "fired: {} of {}; accepted after the due second: p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
        lags.len(),
        outcomes.len(),
        ms(percentile(&lags, 50.0)),
        ms(percentile(&lags, 99.0)),
        ms(lags.last().copied().unwrap_or(0)),
    );
    println!("missing: {missing}; wrong: {}", wrong.len());
    for why in wrong.iter().take(10) {
        println!("  {why}");
    }
    if missing == 0 && wrong.is_empty() {
        println!("OK: every schedule fired exactly once, for its due second");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
