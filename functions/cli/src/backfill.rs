//! `flowgate backfill start|status|pause|resume|cancel`: client commands over HTTP, with a
//! progress bar on a terminal while `start --wait` follows one.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::exchange;
use crate::config::{BackfillCommand, StartBackfill};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs a `backfill` command against `url`.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    command: BackfillCommand,
) -> Result<ExitCode> {
    match command {
        BackfillCommand::Start(start) => self::start(client, url, *start).await,
        BackfillCommand::Status { id, json } => status(client, url, &id, json).await,
        BackfillCommand::Pause { id } => control(client, url, &id, "pause").await,
        BackfillCommand::Resume { id } => control(client, url, &id, "resume").await,
        BackfillCommand::Cancel { id } => control(client, url, &id, "cancel").await,
    }
}

async fn start(client: &reqwest::Client, url: &str, s: StartBackfill) -> Result<ExitCode> {
    let request = client
        .post(format!("{url}/v1/workflows/{}/backfills", s.workflow))
        .json(&s.body);
    if !s.wait || s.body.dry_run {
        return exchange(request).await;
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e} (is `flowgate serve` running?)"))?;
    if !response.status().is_success() {
        let text = response.text().await?;
        eprintln!("{text}");
        return Ok(ExitCode::from(1));
    }
    let started: Value = response.json().await?;
    let id = started["backfill_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eprintln!("backfill {id}: {} dates", started["dates"]);
    follow(client, url, &id, s.json).await
}

/// Polls a backfill until it is no longer running; a bar on a terminal.
async fn follow(client: &reqwest::Client, url: &str, id: &str, json: bool) -> Result<ExitCode> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    loop {
        let view: Value = client
            .get(format!("{url}/v1/backfills/{id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let settled = view["created"].as_u64().unwrap_or(0)
            + view["skipped"].as_u64().unwrap_or(0)
            + view["dead"].as_u64().unwrap_or(0);
        bar.set_length(view["total"].as_u64().unwrap_or(0));
        bar.set_position(settled);
        bar.set_message(format!(
            "created {} skipped {} dead {}",
            view["created"], view["skipped"], view["dead"]
        ));
        if view["state"] != "running" {
            bar.finish_and_clear();
            print_view(&view, json)?;
            return Ok(if view["dead"].as_u64().unwrap_or(0) > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_view(view: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(view)?);
    } else {
        println!(
            "backfill {} of {}: {}; {} dates, {} started, {} created, {} skipped, {} dead",
            view["id"].as_str().unwrap_or("-"),
            view["workflow"].as_str().unwrap_or("-"),
            view["state"].as_str().unwrap_or("-"),
            view["total"],
            view["started"],
            view["created"],
            view["skipped"],
            view["dead"]
        );
    }
    Ok(())
}

async fn status(client: &reqwest::Client, url: &str, id: &str, json: bool) -> Result<ExitCode> {
    let response = client
        .get(format!("{url}/v1/backfills/{id}"))
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e} (is `flowgate serve` running?)"))?;
    if !response.status().is_success() {
        return exchange(client.get(format!("{url}/v1/backfills/{id}"))).await;
    }
    print_view(&response.json().await?, json)?;
    Ok(ExitCode::SUCCESS)
}

async fn control(client: &reqwest::Client, url: &str, id: &str, action: &str) -> Result<ExitCode> {
    exchange(client.post(format!("{url}/v1/backfills/{id}/{action}"))).await
}
