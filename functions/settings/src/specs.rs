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
    pub const ROLES: Spec = spec("roles", "FLOWGATE_ROLES", Format::List(&["api", "consumer", "reconciler"]), "api,consumer,reconciler", &[Serve],
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
    pub const RECONCILE_GRACE: Spec = spec("reconcile-grace", "FLOWGATE_RECONCILE_GRACE", Format::Duration { min: Duration::ZERO, max: DAY }, "60s", &[Serve, Api, Reconciler],
        "How long a request may stay ACCEPTED since its last send before the reconciler looks at it.");
    /// `--reconcile-interval`.
    pub const RECONCILE_INTERVAL: Spec = spec("reconcile-interval", "FLOWGATE_RECONCILE_INTERVAL", Format::Duration { min: Duration::from_millis(10), max: DAY }, "10s", &[Serve, Api],
        "How often the reconciler sweeps. On AWS it is the reconciler's schedule rate (the API reads it to state the redelivery bound).");
    /// `--table`.
    pub const TABLE: Spec = spec("table", "FLOWGATE_TABLE", Format::Text, "flowgate", ALL_AWS,
        "The DynamoDB table (backend `aws`).");
    /// `--queue`.
    pub const QUEUE: Spec = spec("queue", "FLOWGATE_QUEUE", Format::Text, "flowgate-requests", ALL_AWS,
        "The SQS queue (backend `aws`): its URL, or its name (then looked up once at start).");
    /// `--dlq`.
    pub const DLQ: Spec = spec("dlq", "FLOWGATE_DLQ", Format::Text, "flowgate-requests-dlq", ALL_AWS,
        "The SQS dead-letter queue (backend `aws`): its URL, or its name.");
    /// `--retention-days`.
    pub const RETENTION_DAYS: Spec = spec("retention-days", "FLOWGATE_RETENTION_DAYS", Format::Count { min: 1, max: 36_500 }, "7", ALL_AWS,
        "Days a CREATED or ARCHIVED request is kept on DynamoDB before its TTL expires it. DEAD requests never expire.");
    /// `--tenant-claim`.
    pub const TENANT_CLAIM: Spec = spec("tenant-claim", "FLOWGATE_TENANT_CLAIM", Format::Text, "tenant", &[Api],
        "The JWT claim that names the tenant on the API function (the subject `sub` when it is absent).");
    /// `--faults`.
    pub const FAULTS: Spec = spec("faults", "FLOWGATE_FAULTS", Format::OptionalText, "", &[Serve],
        "Fault injection, `point=rate[:permanent][:after],...`; only builds with `--features faults` accept it (docs/operations.md).");
    /// `--log-format`.
    pub const LOG_FORMAT: Spec = spec("log-format", "FLOWGATE_LOG_FORMAT", Format::Choice(&["text", "json"]), "text", &[Serve, Operator],
        "`json` writes one JSON object per line. `RUST_LOG` filters (default `info` for serve, `warn` for dlq).");
    /// `--url`.
    pub const URL: Spec = spec("url", "FLOWGATE_URL", Format::Text, "http://127.0.0.1:8080", &[Client],
        "Base URL of a running server, for the client commands.");
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
    &RETENTION_DAYS,
    &TENANT_CLAIM,
    &FAULTS,
    &LOG_FORMAT,
    &URL,
];

/// The settings `host` reads.
pub fn read_by(host: Host) -> impl Iterator<Item = &'static Spec> {
    ALL.iter()
        .copied()
        .filter(move |s| s.read_by.contains(&host))
}
