//! The command line. Every setting's flag and variable come from `flowgate_settings`, so a
//! setting is named, parsed and documented in one place.

use std::marker::PhantomData;
use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, Command as ClapCommand, FromArgMatches, Parser, Subcommand};

use flowgate_core::usecases::dlq::{FilterParams, ReplayParams};
use flowgate_settings::{Host, Settings, specs};

/// Flowgate: start workflow instances that are never silently lost.
#[derive(Debug, Parser)]
#[command(name = "flowgate", version)]
pub struct Cli {
    /// Base URL of a running server, for the client commands.
    #[arg(long = specs::URL.flag, global = true, env = specs::URL.env, default_value = specs::URL.default)]
    pub url: String,

    /// The API token the client commands send (`Authorization: Bearer`).
    #[arg(long = specs::TOKEN.flag, global = true, env = specs::TOKEN.env, default_value = specs::TOKEN.default, hide_env_values = true)]
    pub token: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, consumer and reconciler over the embedded store.
    Serve(HostSettings<ServeHost>),
    /// Start an instance of a workflow.
    Submit(SubmitArgs),
    /// Show a request with its history.
    Status(StatusArgs),
    /// Register or read workflow definitions.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Put, read, list, delete, pause and resume a workflow's schedules.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Start a backfill, follow it, and pause, resume or cancel it.
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// Count where every request accepted in a window is, and check that none was lost.
    Audit(crate::audit::AuditArgs),
    /// Load a running server and report throughput, latency and lag.
    Bench(crate::bench::BenchArgs),
    /// Manage the AWS backend's resources.
    Aws(AwsArgs),
    /// Inspect, replay, archive and restore dead letters.
    Dlq(DlqArgs),
    /// Create, list and revoke API tokens (the embedded store keeps them, hashed).
    Tokens(TokensArgs),
}

/// `flowgate tokens ...`: works on the data directory directly, like `dlq`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// Where the store is.
    #[command(flatten)]
    pub settings: HostSettings<OperatorHost>,

    #[command(subcommand)]
    pub command: TokensCommand,
}

/// The `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token; it is printed once and never stored.
    Create {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// What it may do: start (start and read), dlq, admin, metrics (read `/metrics`),
        /// report (report any instance's status); comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "start")]
        scope: Vec<flowgate_core::auth::Scope>,
        /// Its own requests-per-second limit (instead of --rate-limit's per tenant).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Every token: id, tenant, scopes, rate, created, revoked.
    List {
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (it stops working within two seconds).
    Revoke {
        /// The token's id, as `tokens list` shows it.
        id: String,
    },
}

/// The host whose settings a command reads.
pub trait ForHost {
    /// The host.
    const HOST: Host;
}

/// `flowgate serve`.
#[derive(Debug, Clone)]
pub struct ServeHost;
impl ForHost for ServeHost {
    const HOST: Host = Host::Serve;
}

/// `flowgate dlq` and `flowgate aws`.
#[derive(Debug, Clone)]
pub struct OperatorHost;
impl ForHost for OperatorHost {
    const HOST: Host = Host::Operator;
}

/// The settings of host `H`, as flags (each with its variable) generated from the specs.
#[derive(Debug, Clone)]
pub struct HostSettings<H>(pub Settings, PhantomData<H>);

impl<H: ForHost> FromArgMatches for HostSettings<H> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Settings::load(H::HOST, &|spec| {
            matches.get_one::<String>(spec.flag).cloned()
        })
        .map(|s| Self(s, PhantomData))
        .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n")))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<H: ForHost> Args for HostSettings<H> {
    fn augment_args(cmd: ClapCommand) -> ClapCommand {
        specs::read_by(H::HOST).fold(cmd, |cmd, spec| {
            let arg = Arg::new(spec.flag)
                .long(spec.flag)
                .env(spec.env)
                .global(true)
                .value_name(spec.format.value_name())
                .help(format!(
                    "{} Format: {}. [default: {}]",
                    spec.meaning,
                    spec.format.describe(),
                    spec.default
                ));
            // A flag given bare (`--allow-private-targets`) means true.
            let arg = match spec.format {
                flowgate_settings::Format::Flag => {
                    arg.num_args(0..=1).default_missing_value("true")
                }
                _ => arg,
            };
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: ClapCommand) -> ClapCommand {
        Self::augment_args(cmd)
    }
}

/// `flowgate dlq ...`: works on the backend directly, like `serve`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Where the backend is.
    #[command(flatten)]
    pub settings: HostSettings<OperatorHost>,

    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One row per dead letter; changes nothing.
    List {
        #[command(flatten)]
        filter: FilterParams,
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
        params: ReplayParams,
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write dead letters to a JSONL file (fsync'd), then remove them and mark them ARCHIVED.
    Archive {
        #[command(flatten)]
        filter: FilterParams,
        /// At most this many letters.
        #[arg(long)]
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

/// `flowgate aws ...`.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// The resources' names and the queue's settings.
    #[command(flatten)]
    pub settings: HostSettings<OperatorHost>,

    #[command(subcommand)]
    pub command: AwsCommand,
}

/// The `aws` subcommands.
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the table (with its GSIs and TTL), the queue and its DLQ, as template.yaml
    /// defines them. Running it again does no harm.
    Bootstrap,
}

/// Options of `flowgate submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Workflow code.
    pub workflow: String,
    /// Start params, a JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Instead of one start: every line of FILE.jsonl (`-` reads stdin) is a start, an
    /// object with `idempotency_key`, `params`, `priority` and `schedule_time`, all optional;
    /// sent by `POST .../instances/batch` in batches of `--batch-size`, each line's result
    /// printed as one JSON line. Give each line a key: a batch then retries safely.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["priority", "schedule_time", "key", "wait"])]
    pub batch: Option<std::path::PathBuf>,
    /// Starts per batch request, 1 to 500.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=500), requires = "batch")]
    pub batch_size: u16,
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
        /// Its DolphinScheduler definition code, for the DolphinScheduler door.
        #[arg(long)]
        ds_code: Option<i64>,
        /// The DolphinScheduler project it answers under at that door.
        #[arg(long)]
        ds_project_code: Option<i64>,
        /// Where its instances are handed off, inline or `@file.json`: a webhook, Step
        /// Functions or EventBridge target (see docs/targets.md). Without it, record-only.
        #[arg(long)]
        target: Option<String>,
    },
    /// Show a workflow.
    Get {
        /// Workflow code.
        code: String,
    },
}

/// `flowgate schedules ...`: client commands against a running server.
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create or replace a schedule (give one of --cron, --rate and --at).
    Put(Box<PutSchedule>),
    /// Show a schedule with its next fire times.
    Get {
        /// Workflow code.
        workflow: String,
        /// Schedule id.
        id: String,
    },
    /// A workflow's schedules.
    List {
        /// Workflow code.
        workflow: String,
    },
    /// Delete a schedule.
    Delete {
        /// Workflow code.
        workflow: String,
        /// Schedule id.
        id: String,
    },
    /// Stop a schedule from firing.
    Pause {
        /// Workflow code.
        workflow: String,
        /// Schedule id.
        id: String,
    },
    /// Let a paused schedule fire again (its catch-up policy applies to what it missed).
    Resume {
        /// Workflow code.
        workflow: String,
        /// Schedule id.
        id: String,
    },
}

/// Options of `flowgate schedules put`: the body's own fields, as flags.
#[derive(Debug, Args)]
pub struct PutSchedule {
    /// Workflow code.
    pub workflow: String,
    /// Schedule id.
    pub id: String,
    /// The schedule.
    #[command(flatten)]
    pub body: flowgate_core::usecases::schedules::ScheduleBody,
}

/// `flowgate backfill ...`: client commands against a running server.
#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Start one: a range (--from, --to, with --cron or the workflow's schedules), or --dates.
    Start(Box<StartBackfill>),
    /// Its progress: state, total, started, created, skipped, dead.
    Status {
        /// The backfill id.
        id: String,
        /// JSON output for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Stop starting dates.
    Pause {
        /// The backfill id.
        id: String,
    },
    /// Start dates again.
    Resume {
        /// The backfill id.
        id: String,
    },
    /// Stop for good.
    Cancel {
        /// The backfill id.
        id: String,
    },
}

/// Options of `flowgate backfill start`: the body's own fields, as flags.
#[derive(Debug, Args)]
pub struct StartBackfill {
    /// Workflow code.
    pub workflow: String,
    /// The backfill.
    #[command(flatten)]
    pub body: flowgate_core::usecases::backfills::BackfillBody,
    /// Follow its progress until it ends (a progress bar on a terminal).
    #[arg(long)]
    pub wait: bool,
    /// JSON output for scripts.
    #[arg(long)]
    pub json: bool,
}
