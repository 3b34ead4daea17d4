//! `flowgate schedules put|get|list|delete|pause|resume`: client commands over HTTP.

use std::process::ExitCode;

use flowgate_core::usecases::schedules::{ScheduleBody, ScheduleView};

use crate::client::exchange;
use crate::config::{PutSchedule, SchedulesCommand};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

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
            let PutSchedule { workflow, id, body } = *put;
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
    let view: ScheduleView = current.json().await?;
    let mut body = ScheduleBody::from(view.definition);
    body.paused = paused;
    exchange(client.put(path(url, workflow, id)).json(&body)).await
}
