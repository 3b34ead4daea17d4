//! The client commands: `submit`, `status`, `workflows put|get`.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::config::{StatusArgs, SubmitArgs, WorkflowsCommand};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// An HTTP client that sends `token` (when there is one) as a bearer token.
pub fn http(token: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if !token.is_empty() {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "--token (FLOWGATE_TOKEN) holds characters a header cannot carry")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    flowgate_targets::install_tls_provider();
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(1024)
        .build()?)
}

/// A JSON argument given inline or as `@file.json`.
fn json_arg(flag: &str, value: &str) -> Result<Value> {
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {flag} file {path}: {e}"))?,
        None => value.to_owned(),
    };
    Ok(serde_json::from_str(&text).map_err(|e| format!("{flag} is not valid JSON: {e}"))?)
}

/// Sends a request and prints the JSON answer: to stdout on success (exit 0), to stderr as
/// `HTTP <status>: <detail>` on failure (exit 1).
pub async fn exchange(request: reqwest::RequestBuilder) -> Result<ExitCode> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e} (is `flowgate serve` running?)"))?;
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let text = response.text().await?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    let pretty = serde_json::to_string_pretty(&body)?;
    if status.is_success() {
        if replayed {
            eprintln!("(idempotent replay of an earlier request)");
        }
        if !body.is_null() {
            println!("{pretty}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let detail = body["detail"].as_str().unwrap_or("");
        eprintln!("HTTP {status}: {detail}\n{pretty}");
        Ok(ExitCode::from(1))
    }
}

/// `flowgate submit`.
pub async fn submit(client: &reqwest::Client, url: &str, args: SubmitArgs) -> Result<ExitCode> {
    if let Some(file) = &args.batch {
        return submit_batch(client, url, &args.workflow, file, args.batch_size.into()).await;
    }
    let params: Value = serde_json::from_str(&args.params)
        .map_err(|e| format!("--params is not valid JSON: {e}"))?;
    let mut body = json!({ "params": params });
    if let Some(p) = args.priority {
        body["priority"] = json!(p.to_ascii_uppercase());
    }
    if let Some(t) = args.schedule_time {
        body["schedule_time"] = json!(t);
    }
    let mut request = client
        .post(format!("{url}/v1/workflows/{}/instances", args.workflow))
        .json(&body);
    if let Some(key) = args.key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(wait) = args.wait {
        request = request.header("Prefer", format!("wait={wait}"));
    }
    exchange(request).await
}

/// One line of a `submit --batch` file.
struct Line {
    /// Its 1-based number in the file.
    number: usize,
    start: Value,
}

/// The starts of a JSONL file (`-`: stdin): every non-blank line a JSON object. A line that
/// is not refuses the whole file, before anything is sent.
fn read_starts(file: &std::path::Path) -> Result<Vec<Line>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let start: Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "{}:{}: not a JSON object: {e}; nothing was sent",
                file.display(),
                i + 1
            )
        })?;
        if !start.is_object() {
            return Err(format!(
                "{}:{}: a start must be a JSON object; nothing was sent",
                file.display(),
                i + 1
            )
            .into());
        }
        lines.push(Line {
            number: i + 1,
            start,
        });
    }
    if lines.is_empty() {
        return Err(format!("{} holds no starts", file.display()).into());
    }
    Ok(lines)
}

/// `flowgate submit --batch FILE.jsonl`: sends the file's starts in batches, prints each
/// line's result as a JSON line (`line`, `status`, `request_id`, `problem`...), and a count
/// on stderr. Exit 1 if any start was refused or a batch went unanswered.
async fn submit_batch(
    client: &reqwest::Client,
    url: &str,
    workflow: &str,
    file: &std::path::Path,
    size: usize,
) -> Result<ExitCode> {
    let lines = read_starts(file)?;
    let endpoint = format!("{url}/v1/workflows/{workflow}/instances/batch");
    let (mut accepted, mut replayed, mut refused) = (0, 0, 0);
    for chunk in lines.chunks(size) {
        let starts: Vec<&Value> = chunk.iter().map(|l| &l.start).collect();
        let (first, last) = (chunk[0].number, chunk[chunk.len() - 1].number);
        let unanswered = |why: String| -> Result<ExitCode> {
            eprintln!(
                "lines {first} to {last}: {why}; those lines and the rest were not confirmed \
                 (with idempotency keys, submitting the file again is safe)"
            );
            eprintln!("{accepted} accepted, {replayed} replayed, {refused} refused before that");
            Ok(ExitCode::from(1))
        };
        let response = match client
            .post(&endpoint)
            .json(&json!({ "starts": starts }))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return unanswered(format!("cannot reach the server: {e}")),
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            return unanswered(format!("HTTP {status}: {detail}"));
        }
        let Some(results) = body["results"]
            .as_array()
            .filter(|r| r.len() == chunk.len())
        else {
            return unanswered("the answer does not list one result per start".into());
        };
        for (line, result) in chunk.iter().zip(results) {
            let mut shown = json!({ "line": line.number });
            if let (Some(shown), Some(result)) = (shown.as_object_mut(), result.as_object()) {
                shown.extend(result.clone());
            }
            println!("{shown}");
            if result.get("problem").is_some() {
                refused += 1;
            } else if result["replayed"] == json!(true) {
                replayed += 1;
            } else {
                accepted += 1;
            }
        }
    }
    eprintln!("{accepted} accepted, {replayed} replayed, {refused} refused");
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `flowgate status`.
pub async fn status(client: &reqwest::Client, url: &str, args: StatusArgs) -> Result<ExitCode> {
    exchange(client.get(format!("{url}/v1/requests/{}", args.request_id))).await
}

/// `flowgate workflows put|get`.
pub async fn workflows(
    client: &reqwest::Client,
    url: &str,
    command: WorkflowsCommand,
) -> Result<ExitCode> {
    match command {
        WorkflowsCommand::Put {
            code,
            name,
            schema,
            offline,
            ds_code,
            ds_project_code,
            target,
        } => {
            let params_schema = json_arg("--schema", &schema)?;
            let mut body =
                json!({ "name": name, "online": !offline, "params_schema": params_schema });
            if let Some(target) = target {
                body["target"] = json_arg("--target", &target)?;
            }
            for (field, value) in [("ds_code", ds_code), ("ds_project_code", ds_project_code)] {
                if let Some(v) = value {
                    body[field] = json!(v);
                }
            }
            exchange(client.put(format!("{url}/v1/workflows/{code}")).json(&body)).await
        }
        WorkflowsCommand::Get { code } => {
            exchange(client.get(format!("{url}/v1/workflows/{code}"))).await
        }
    }
}
