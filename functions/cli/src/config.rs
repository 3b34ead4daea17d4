//! Command-line and environment configuration (every option has a `FLOWGATE_*` variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Flowgate: start workflow instances that are never silently lost.
#[derive(Debug, Parser)]
#[command(name = "flowgate", version)]
pub struct Cli {
    /// Base URL of a running server, for the client commands.
    #[arg(
        long,
        global = true,
        env = "FLOWGATE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, consumer and reconciler over the embedded store.
    Serve(ServeArgs),
    /// Start an instance of a workflow.
    Submit(SubmitArgs),
    /// Show a request with its history.
    Status(StatusArgs),
    /// Register or read workflow definitions.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Load a running server and report throughput, latency and lag.
    Bench(crate::bench::BenchArgs),
    /// Manage the AWS backend's resources.
    #[command(subcommand)]
    Aws(AwsCommand),
    /// Inspect, replay, archive and restore dead letters.
    Dlq(DlqArgs),
}

/// `flowgate dlq ...`: works on the backend directly, like `serve`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// The backend holding the dead-letter queue.
    #[arg(
        long,
        global = true,
        env = "FLOWGATE_BACKEND",
        default_value = "embedded"
    )]
    pub backend: Backend,

    /// Directory of the embedded store (it must exist).
    #[arg(
        long,
        global = true,
        env = "FLOWGATE_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: DlqCommand,
}

/// Which dead letters a `dlq` command applies to; every option given must match.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only this workflow's letters.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only this tenant's letters.
    #[arg(long)]
    pub tenant: Option<String>,
    /// A failure kind (permanent, exhausted, poison, unknown) or a substring of the reason.
    #[arg(long)]
    pub error: Option<String>,
    /// Only letters dead-lettered at least this long ago (e.g. 15m, 2h, 7d).
    #[arg(long, value_parser = age)]
    pub older_than: Option<Duration>,
    /// Only letters dead-lettered at most this long ago.
    #[arg(long, value_parser = age)]
    pub newer_than: Option<Duration>,
}

fn age(text: &str) -> Result<Duration, String> {
    flowgate_core::usecases::dlq::parse_duration(text)
}

/// A rate such as `50/s`, `50` (per second) or `600/m`.
pub fn rate(text: &str) -> Result<f64, String> {
    let (count, per) = text.split_once('/').unwrap_or((text, "s"));
    let seconds = match per {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit /{per}: use /s, /m or /h")),
    };
    match count.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / seconds),
        _ => Err(format!(
            "{count:?} is not a positive number (examples: 50/s, 600/m)"
        )),
    }
}

/// The `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One row per dead letter; changes nothing.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// A request's dead letter, its record and its full history.
    Show {
        /// The request id.
        request_id: String,
        /// The request's tenant, when request ids could clash across tenants.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the main queue and their requests back to ACCEPTED.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many letters.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// At most this many letters per second (50/s, 600/m).
        #[arg(long, value_parser = rate)]
        rate: Option<f64>,
        /// Show what would happen, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write dead letters to a JSONL file (fsync'd), then remove them and mark them ARCHIVED.
    Archive {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many letters.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// The archive file; appended to if it exists.
        #[arg(long)]
        out: PathBuf,
    },
    /// Put the letters of an archive file back in the dead-letter queue.
    Restore {
        /// The archive file `dlq archive` wrote.
        file: PathBuf,
    },
}

/// A role `serve` can run; the roles can be split across processes on one data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API.
    Api,
    /// The queue consumer that creates instances.
    Consumer,
    /// The periodic sweep that re-sends stuck requests.
    Reconciler,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 500ms, 2m)"))
}

/// Where `serve` keeps requests, instances and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// One SQLite file under `--data-dir` (no cloud account needed).
    Embedded,
    /// DynamoDB and SQS, as configured by `FLOWGATE_TABLE`, `FLOWGATE_QUEUE`, `FLOWGATE_DLQ`
    /// and the AWS SDK's own variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials).
    Aws,
}

/// `flowgate aws ...`.
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the table (with its GSIs and TTL), the queue and its DLQ, as template.yaml
    /// defines them. Running it again does no harm.
    Bootstrap {
        /// Deliveries before SQS moves a message to the DLQ.
        #[arg(long, env = "FLOWGATE_MAX_RECEIVE_COUNT", default_value_t = 5,
            value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_receive_count: u32,
        /// The queue's visibility timeout.
        #[arg(long, env = "FLOWGATE_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = duration)]
        visibility_timeout: Duration,
    },
}

/// Options of `flowgate serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(long, env = "FLOWGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where to keep the data.
    #[arg(long, env = "FLOWGATE_BACKEND", default_value = "embedded")]
    pub backend: Backend,

    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "FLOWGATE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Roles to run in this process.
    #[arg(
        long,
        env = "FLOWGATE_ROLES",
        value_delimiter = ',',
        default_value = "api,consumer,reconciler"
    )]
    pub roles: Vec<Role>,

    /// Deliveries of a message before it is dead-lettered.
    #[arg(long, env = "FLOWGATE_MAX_RECEIVE_COUNT", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receive_count: u32,

    /// How long a delivered message stays invisible before redelivery.
    #[arg(long, env = "FLOWGATE_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub visibility_timeout: Duration,

    /// First retry delay after a failed delivery (doubles, capped by the visibility timeout).
    #[arg(long, env = "FLOWGATE_RETRY_BASE", default_value = "1s", value_parser = duration)]
    pub retry_base: Duration,

    /// How long a request may stay pending before the reconciler re-sends it.
    #[arg(long, env = "FLOWGATE_RECONCILE_GRACE", default_value = "60s", value_parser = duration)]
    pub reconcile_grace: Duration,

    /// How often the reconciler sweeps.
    #[arg(long, env = "FLOWGATE_RECONCILE_INTERVAL", default_value = "10s", value_parser = duration)]
    pub reconcile_interval: Duration,
}

/// Options of `flowgate submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Workflow code.
    pub workflow: String,
    /// Start params, a JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// HIGHEST, HIGH, MEDIUM, LOW or LOWEST.
    #[arg(long)]
    pub priority: Option<String>,
    /// RFC 3339 time to run the instance at.
    #[arg(long)]
    pub schedule_time: Option<String>,
    /// Idempotency key; reuse it to retry safely.
    #[arg(long)]
    pub key: Option<String>,
    /// Wait up to this many seconds (at most 20) for the instance to exist.
    #[arg(long)]
    pub wait: Option<u64>,
}

/// Options of `flowgate status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The request id a submit returned.
    pub request_id: String,
}

/// `flowgate workflows ...`.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Register or update a workflow.
    Put {
        /// Workflow code.
        code: String,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// JSON Schema of the start params, inline or `@file.json`.
        #[arg(long, default_value = "{\"type\": \"object\"}")]
        schema: String,
        /// Register it offline (it refuses starts).
        #[arg(long)]
        offline: bool,
    },
    /// Show a workflow.
    Get {
        /// Workflow code.
        code: String,
    },
}
