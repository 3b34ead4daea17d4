//! The table of settings: each one's flag, variable, format, default, meaning and readers.

use std::time::Duration;

use crate::Host::{self, Api, Client, Consumer, Operator, Reconciler, Serve};
use crate::format::Format;

/// One setting, as the docs describe it and as the hosts read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    /// The command-line flag, without `--`.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The form of its value.
    pub format: Format,
    /// The value when none is given.
    pub default: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// The hosts that read it.
    pub read_by: &'static [Host],
}

/// A spec, in the order the table below writes them.
const fn spec(
    flag: &'static str,
    env: &'static str,
    format: Format,
    default: &'static str,
    read_by: &'static [Host],
    meaning: &'static str,
) -> Spec {
    Spec {
        flag,
        env,
        format,
        default,
        meaning,
        read_by,
    }
}

const SECOND: Duration = Duration::from_secs(1);
/// SQS's longest visibility timeout, which the embedded queue shares.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The settings, one per constant. Kept unformatted: each spec reads best on a few lines,
/// in the order of [`spec`]'s parameters (flag, variable, format, default, readers, meaning).
#[rustfmt::skip]
mod table {
    use super::*;

    /// `--listen`.
    pub const LISTEN: Spec = spec("listen", "FLOWGATE_LISTEN", Format::Address, "127.0.0.1:8080", &[Serve],
        "Address the API listens on.");
    /// `--backend`.
    pub const BACKEND: Spec = spec("backend", "FLOWGATE_BACKEND", Format::Choice(&["embedded", "aws"]), "embedded", &[Serve, Operator],
        "Where requests, instances and messages live: `embedded` (one SQLite file) or `aws` (DynamoDB and SQS, named by the settings below and the SDK's own `AWS_*` variables).");
    /// `--data-dir`.
    pub const DATA_DIR: Spec = spec("data-dir", "FLOWGATE_DATA_DIR", Format::Path, "./data", &[Serve, Operator],
        "Directory of the embedded store (`flowgate.sqlite3`). `serve` creates it if missing.");
    /// `--roles`.
    pub const ROLES: Spec = spec("roles", "FLOWGATE_ROLES", Format::List(&["api", "consumer", "reconciler", "scheduler"]), "api,consumer,reconciler,scheduler", &[Serve],
        "The roles this `serve` process runs; several processes can share one data directory.");
    /// `--max-receive-count`.
    pub const MAX_RECEIVE_COUNT: Spec = spec("max-receive-count", "FLOWGATE_MAX_RECEIVE_COUNT", Format::Count { min: 1, max: 1000 }, "5", &[Serve, Operator, Consumer],
        "Deliveries of a message before it is dead-lettered (SQS `maxReceiveCount`).");
    /// `--visibility-timeout`.
    pub const VISIBILITY_TIMEOUT: Spec = spec("visibility-timeout", "FLOWGATE_VISIBILITY_TIMEOUT", Format::Duration { min: SECOND, max: MAX_VISIBILITY }, "30s", &[Serve, Operator, Consumer],
        "How long a delivered message stays invisible before it is delivered again; also the longest retry delay. On AWS it must equal the queue's VisibilityTimeout.");
    /// `--retry-base`.
    pub const RETRY_BASE: Spec = spec("retry-base", "FLOWGATE_RETRY_BASE", Format::Duration { min: Duration::ZERO, max: MAX_VISIBILITY }, "1s", &[Serve, Consumer],
        "First retry delay after a failed delivery; it doubles each time, up to the visibility timeout.");
    /// `--reconcile-grace`.
    pub const RECONCILE_GRACE: Spec = spec("reconcile-grace", "FLOWGATE_RECONCILE_GRACE", Format::Duration { min: Duration::ZERO, max: DAY }, "60s", &[Serve, Api, Consumer, Reconciler],
        "How long a request may stay ACCEPTED since its last send before the reconciler looks at it.");
    /// `--reconcile-interval`.
    pub const RECONCILE_INTERVAL: Spec = spec("reconcile-interval", "FLOWGATE_RECONCILE_INTERVAL", Format::Duration { min: Duration::from_millis(10), max: DAY }, "10s", &[Serve, Api, Consumer, Reconciler],
        "How often the reconciler sweeps. On AWS it is the reconciler's schedule rate (the functions that start requests read it to state the redelivery bound).");
    /// `--table`.
    pub const TABLE: Spec = spec("table", "FLOWGATE_TABLE", Format::Text, "flowgate", ALL_AWS,
        "The DynamoDB table (backend `aws`).");
    /// `--queue`.
    pub const QUEUE: Spec = spec("queue", "FLOWGATE_QUEUE", Format::Text, "flowgate-requests", ALL_AWS,
        "The SQS queue (backend `aws`): its URL, or its name (then looked up once at start).");
    /// `--dlq`.
    pub const DLQ: Spec = spec("dlq", "FLOWGATE_DLQ", Format::Text, "flowgate-requests-dlq", ALL_AWS,
        "The SQS dead-letter queue (backend `aws`): its URL, or its name.");
    /// `--schedule-group`.
    pub const SCHEDULE_GROUP: Spec = spec("schedule-group", "FLOWGATE_SCHEDULE_GROUP", Format::OptionalText, "", &[Serve, Operator, Api, Consumer],
        "The EventBridge Scheduler group that holds the stack's schedules (backend `aws`); each Flowgate schedule is one schedule there, and its fires reach the queue. Empty: this host keeps no schedules, and their routes answer 501.");
    /// `--scheduler-role-arn`.
    pub const SCHEDULER_ROLE_ARN: Spec = spec("scheduler-role-arn", "FLOWGATE_SCHEDULER_ROLE_ARN", Format::OptionalText, "", &[Serve, Api, Consumer],
        "The role EventBridge Scheduler assumes to send a schedule's fires to the queue (needed with a schedule group).");
    /// `--queue-arn`.
    pub const QUEUE_ARN: Spec = spec("queue-arn", "FLOWGATE_QUEUE_ARN", Format::OptionalText, "", &[Serve, Api, Consumer],
        "The queue's ARN, where schedule fires are sent (with a schedule group). Empty: looked up once at start.");
    /// `--dlq-arn`.
    pub const DLQ_ARN: Spec = spec("dlq-arn", "FLOWGATE_DLQ_ARN", Format::OptionalText, "", &[Serve, Api, Consumer],
        "The dead-letter queue's ARN, where EventBridge Scheduler puts fires it could not deliver (with a schedule group). Empty: looked up once at start.");
    /// `--retention-days`.
    pub const RETENTION_DAYS: Spec = spec("retention-days", "FLOWGATE_RETENTION_DAYS", Format::Count { min: 1, max: 36_500 }, "7", ALL_AWS,
        "Days a finished request (CREATED or DISPATCHED with nothing owed, or ARCHIVED) is kept after its last change: DynamoDB's TTL expires it on AWS, and the reconciler removes it from the embedded store. DEAD requests never expire; instances are kept.");
    /// `--tenant-claim`.
    pub const TENANT_CLAIM: Spec = spec("tenant-claim", "FLOWGATE_TENANT_CLAIM", Format::Text, "tenant", &[Api],
        "The JWT claim that names the tenant on the API function (the subject `sub` when it is absent).");
    /// `--faults`.
    pub const FAULTS: Spec = spec("faults", "FLOWGATE_FAULTS", Format::OptionalText, "", &[Serve],
        "Fault injection, `point=rate[:permanent][:after],...`; only builds with `--features faults` accept it (docs/operations.md).");
    /// `--otlp-endpoint`.
    pub const OTLP_ENDPOINT: Spec = spec("otlp-endpoint", "FLOWGATE_OTLP_ENDPOINT", Format::OptionalText, "", &[Serve],
        "Exports spans through OpenTelemetry OTLP over HTTP to this base URL (such as `http://127.0.0.1:4318`; `/v1/traces` is added); empty exports nothing. Only builds with `--features otlp` accept it (docs/observability.md).");
    /// `--log-format`.
    pub const LOG_FORMAT: Spec = spec("log-format", "FLOWGATE_LOG_FORMAT", Format::Choice(&["text", "json"]), "text", &[Serve, Operator],
        "`json` writes one JSON object per line. `RUST_LOG` filters (default `info` for serve, `warn` for dlq).");
    /// `--scheduler-tick`.
    pub const SCHEDULER_TICK: Spec = spec("scheduler-tick", "FLOWGATE_SCHEDULER_TICK", Format::Duration { min: Duration::from_millis(10), max: Duration::from_secs(10) }, "250ms", &[Serve],
        "How often the scheduler role looks for due schedules; a fire starts within about this of its due time.");
    /// `--validation-budget`.
    pub const VALIDATION_BUDGET: Spec = spec("validation-budget", "FLOWGATE_VALIDATION_BUDGET", Format::Duration { min: Duration::from_millis(1), max: Duration::from_secs(10) }, "250ms", &[Serve, Api, Consumer],
        "The longest one start request's params may take to validate against its schema; past it the request is refused (400). Validation runs off the async workers, at most one per core at a time.");
    /// `--header-read-timeout`.
    pub const HEADER_READ_TIMEOUT: Spec = spec("header-read-timeout", "FLOWGATE_HEADER_READ_TIMEOUT", Format::Duration { min: Duration::from_millis(100), max: Duration::from_secs(300) }, "10s", &[Serve],
        "How long a client may take to send a request's headers, from the moment its connection is ready for one; then the connection is closed.");
    /// `--idle-timeout`.
    pub const IDLE_TIMEOUT: Spec = spec("idle-timeout", "FLOWGATE_IDLE_TIMEOUT", Format::Duration { min: SECOND, max: Duration::from_secs(3600) }, "60s", &[Serve],
        "How long a connection may send nothing at all before it is closed (longer than the longest `Prefer: wait`).");
    /// `--max-connections`.
    pub const MAX_CONNECTIONS: Spec = spec("max-connections", "FLOWGATE_MAX_CONNECTIONS", Format::Count { min: 1, max: 65_536 }, "512", &[Serve],
        "The most client connections served at once; past it a new connection gets a 503 and is closed. Keep it under the process's file limit.");
    /// `--max-connections-per-address`.
    pub const MAX_CONNECTIONS_PER_ADDRESS: Spec = spec("max-connections-per-address", "FLOWGATE_MAX_CONNECTIONS_PER_ADDRESS", Format::Count { min: 1, max: 65_536 }, "128", &[Serve],
        "The most connections one client address may hold at once (a quarter of the default --max-connections), so that one client cannot take every slot; past it that address's new connection gets a 503 and is closed, and other addresses are still served.");
    /// `--read-pool`.
    pub const READ_POOL: Spec = spec("read-pool", "FLOWGATE_READ_POOL", Format::Count { min: 1, max: 256 }, "8", &[Serve, Operator],
        "The most read connections the embedded store opens (reads beyond it wait for one).");
    /// `--rate-limit`.
    pub const RATE_LIMIT: Spec = spec("rate-limit", "FLOWGATE_RATE_LIMIT", Format::Count { min: 0, max: 1_000_000 }, "0", &[Serve],
        "Requests per second each tenant may make (bursts of one second's worth); past it, 429 with Retry-After. 0 means no limit. A token may set its own (`flowgate tokens create --rate`).");
    /// `--insecure-no-auth`.
    pub const INSECURE_NO_AUTH: Spec = spec("insecure-no-auth", "FLOWGATE_INSECURE_NO_AUTH", Format::Flag, "false", &[Serve],
        "Serve without tokens on a non-loopback address. Without it, `serve` refuses to listen beyond loopback until a token exists.");
    /// `--allow-private-targets`.
    pub const ALLOW_PRIVATE_TARGETS: Spec = spec("allow-private-targets", "FLOWGATE_ALLOW_PRIVATE_TARGETS", Format::Flag, "false", &[Serve, Api, Consumer],
        "Let webhook targets reach loopback, link-local (169.254.169.254 included) and private addresses. Off, such a target is refused when stored (400) and when a name resolves to one at hand-off.");
    /// `--tenant-from-sub`.
    pub const TENANT_FROM_SUB: Spec = spec("tenant-from-sub", "FLOWGATE_TENANT_FROM_SUB", Format::Flag, "false", &[Api],
        "Take the tenant from a JWT's `sub` when the tenant claim is absent. Off, such a token is refused (403).");
    /// `--iam-tenant`.
    pub const IAM_TENANT: Spec = spec("iam-tenant", "FLOWGATE_IAM_TENANT", Format::Choice(&["principal", "account"]), "principal", &[Api],
        "Under IAM auth, the tenant is the caller's stable principal (a user's ARN, or an assumed role's role ARN without its session name) or its account id.");
    /// `--token`.
    pub const TOKEN: Spec = spec("token", "FLOWGATE_TOKEN", Format::OptionalText, "", &[Client],
        "The API token the client commands send (`Authorization: Bearer`); needed once the server has any token.");
    /// `--url`.
    pub const URL: Spec = spec("url", "FLOWGATE_URL", Format::Text, "http://127.0.0.1:8080", &[Client],
        "Base URL of a running server, for the client commands.");
    /// `--public-url`.
    pub const PUBLIC_URL: Spec = spec("public-url", "FLOWGATE_PUBLIC_URL", Format::OptionalText, "", &[Serve, Api, Consumer, Reconciler],
        "The API's public base URL: each hand-off's `callback.url` is built on it. Empty: `http://` and the listen address on the embedded host; the stack's API endpoint on AWS (template.yaml sets it).");
    /// `--callback-secret`.
    pub const CALLBACK_SECRET: Spec = spec("callback-secret", "FLOWGATE_CALLBACK_SECRET", Format::OptionalText, "", &[Serve, Api, Consumer, Reconciler],
        "The key (at least 32 characters) that signs each instance's callback token. Empty: the embedded host keeps a random one in the data directory (`callback.key`); on AWS the stack makes one in Secrets Manager. Changing it voids the tokens already handed out.");
    /// `--tenant-weights`.
    pub const TENANT_WEIGHTS: Spec = spec("tenant-weights", "FLOWGATE_TENANT_WEIGHTS", Format::OptionalText, "", &[Serve],
        "Fair delivery on the embedded host: each tenant's share when several have starts waiting, as `tenant=weight,...` (1 to 100; a tenant not named weighs 1).");
}

pub use table::*;

/// Every host that may run on the AWS backend.
const ALL_AWS: &[Host] = &[Serve, Operator, Api, Consumer, Reconciler];

/// Every setting, in the order the docs list them.
pub static ALL: &[&Spec] = &[
    &LISTEN,
    &BACKEND,
    &DATA_DIR,
    &ROLES,
    &MAX_RECEIVE_COUNT,
    &VISIBILITY_TIMEOUT,
    &RETRY_BASE,
    &RECONCILE_GRACE,
    &RECONCILE_INTERVAL,
    &TABLE,
    &QUEUE,
    &DLQ,
    &SCHEDULE_GROUP,
    &SCHEDULER_ROLE_ARN,
    &QUEUE_ARN,
    &DLQ_ARN,
    &RETENTION_DAYS,
    &TENANT_CLAIM,
    &FAULTS,
    &OTLP_ENDPOINT,
    &LOG_FORMAT,
    &SCHEDULER_TICK,
    &VALIDATION_BUDGET,
    &HEADER_READ_TIMEOUT,
    &IDLE_TIMEOUT,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_ADDRESS,
    &READ_POOL,
    &RATE_LIMIT,
    &INSECURE_NO_AUTH,
    &ALLOW_PRIVATE_TARGETS,
    &TENANT_FROM_SUB,
    &IAM_TENANT,
    &TOKEN,
    &URL,
    &PUBLIC_URL,
    &CALLBACK_SECRET,
    &TENANT_WEIGHTS,
];

/// The settings `host` reads.
pub fn read_by(host: Host) -> impl Iterator<Item = &'static Spec> {
    ALL.iter()
        .copied()
        .filter(move |s| s.read_by.contains(&host))
}
