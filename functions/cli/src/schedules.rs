//! `flowgate schedules put|get|list|delete|pause|resume`: client commands over HTTP.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::client::exchange;
use crate::config::{PutSchedule, SchedulesCommand};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The fields of a schedule a client puts (its view adds what the server computes).
const DEFINITION: &[&str] = &[
    "cron", "rate", "at", "timezone", "start", "end", "params", "priority", "paused", "catchup",
];

fn path(url: &str, workflow: &str, id: &str) -> String {
    format!("{url}/v1/workflows/{workflow}/schedules/{id}")
}

/// Runs a `schedules` command against `url`.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    command: SchedulesCommand,
) -> Result<ExitCode> {
    match command {
        SchedulesCommand::Put(put) => {
            let PutSchedule {
                workflow,
                id,
                cron,
                rate,
                at,
                timezone,
                start,
                end,
                params,
                priority,
                paused,
                catchup,
                catchup_window,
            } = *put;
            let params: Value = serde_json::from_str(&params)
                .map_err(|e| format!("--params is not valid JSON: {e}"))?;
            let mut body = json!({"timezone": timezone, "params": params, "paused": paused,
                "catchup": {"policy": catchup, "window": catchup_window}});
            for (field, value) in [
                ("cron", cron),
                ("rate", rate),
                ("at", at),
                ("start", start),
                ("end", end),
            ] {
                if let Some(v) = value {
                    body[field] = json!(v);
                }
            }
            if let Some(p) = priority {
                body["priority"] = json!(p.to_ascii_uppercase());
            }
            exchange(client.put(path(url, &workflow, &id)).json(&body)).await
        }
        SchedulesCommand::Get { workflow, id } => {
            exchange(client.get(path(url, &workflow, &id))).await
        }
        SchedulesCommand::List { workflow } => {
            exchange(client.get(format!("{url}/v1/workflows/{workflow}/schedules"))).await
        }
        SchedulesCommand::Delete { workflow, id } => {
            exchange(client.delete(path(url, &workflow, &id))).await
        }
        SchedulesCommand::Pause { workflow, id } => {
            set_paused(client, url, &workflow, &id, true).await
        }
        SchedulesCommand::Resume { workflow, id } => {
            set_paused(client, url, &workflow, &id, false).await
        }
    }
}

/// Reads a schedule and puts it back with `paused` changed.
async fn set_paused(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    id: &str,
    paused: bool,
) -> Result<ExitCode> {
    let current = client
        .get(path(url, workflow, id))
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e} (is `flowgate serve` running?)"))?;
    if !current.status().is_success() {
        return exchange(client.get(path(url, workflow, id))).await;
    }
    let view: Value = current.json().await?;
    let mut body = serde_json::Map::new();
    for field in DEFINITION {
        if let Some(v) = view.get(*field).filter(|v| !v.is_null()) {
            body.insert((*field).to_owned(), v.clone());
        }
    }
    body.insert("paused".into(), json!(paused));
    exchange(client.put(path(url, workflow, id)).json(&body)).await
}
