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

const SECOND: Duration = Duration::from_secs(1);
/// SQS's longest visibility timeout, which the embedded queue shares.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const DAY: Duration = Duration::from_secs(86_400);

/// `--listen`.
pub const LISTEN: Spec = Spec {
    flag: "listen",
    env: "FLOWGATE_LISTEN",
    format: Format::Address,
    default: "127.0.0.1:8080",
    meaning: "Address the API listens on.",
    read_by: &[Serve],
};

/// `--backend`.
pub const BACKEND: Spec = Spec {
    flag: "backend",
    env: "FLOWGATE_BACKEND",
    format: Format::Choice(&["embedded", "aws"]),
    default: "embedded",
    meaning: "Where requests, instances and messages live: `embedded` (one SQLite file) or `aws` (DynamoDB and SQS, named by the settings below and the SDK's own `AWS_*` variables).",
    read_by: &[Serve, Operator],
};

/// `--data-dir`.
pub const DATA_DIR: Spec = Spec {
    flag: "data-dir",
    env: "FLOWGATE_DATA_DIR",
    format: Format::Path,
    default: "./data",
    meaning: "Directory of the embedded store (`flowgate.sqlite3`). `serve` creates it if missing.",
    read_by: &[Serve, Operator],
};

/// `--roles`.
pub const ROLES: Spec = Spec {
    flag: "roles",
    env: "FLOWGATE_ROLES",
    format: Format::List(&["api", "consumer", "reconciler"]),
    default: "api,consumer,reconciler",
    meaning: "The roles this `serve` process runs; several processes can share one data directory.",
    read_by: &[Serve],
};

/// `--max-receive-count`.
pub const MAX_RECEIVE_COUNT: Spec = Spec {
    flag: "max-receive-count",
    env: "FLOWGATE_MAX_RECEIVE_COUNT",
    format: Format::Count { min: 1, max: 1000 },
    default: "5",
    meaning: "Deliveries of a message before it is dead-lettered (SQS `maxReceiveCount`).",
    read_by: &[Serve, Operator, Consumer],
};

/// `--visibility-timeout`.
pub const VISIBILITY_TIMEOUT: Spec = Spec {
    flag: "visibility-timeout",
    env: "FLOWGATE_VISIBILITY_TIMEOUT",
    format: Format::Duration {
        min: SECOND,
        max: MAX_VISIBILITY,
    },
    default: "30s",
    meaning: "How long a delivered message stays invisible before it is delivered again; also the longest retry delay. On AWS it must equal the queue's VisibilityTimeout.",
    read_by: &[Serve, Operator, Consumer],
};

/// `--retry-base`.
pub const RETRY_BASE: Spec = Spec {
    flag: "retry-base",
    env: "FLOWGATE_RETRY_BASE",
    format: Format::Duration {
        min: Duration::ZERO,
        max: MAX_VISIBILITY,
    },
    default: "1s",
    meaning: "First retry delay after a failed delivery; it doubles each time, up to the visibility timeout.",
    read_by: &[Serve, Consumer],
};

/// `--reconcile-grace`.
pub const RECONCILE_GRACE: Spec = Spec {
    flag: "reconcile-grace",
    env: "FLOWGATE_RECONCILE_GRACE",
    format: Format::Duration {
        min: Duration::ZERO,
        max: DAY,
    },
    default: "60s",
    meaning: "How long a request may stay ACCEPTED since its last send before the reconciler looks at it.",
    read_by: &[Serve, Api, Reconciler],
};

/// `--reconcile-interval`.
pub const RECONCILE_INTERVAL: Spec = Spec {
    flag: "reconcile-interval",
    env: "FLOWGATE_RECONCILE_INTERVAL",
    format: Format::Duration {
        min: Duration::from_millis(10),
        max: DAY,
    },
    default: "10s",
    meaning: "How often the reconciler sweeps. On AWS it is the reconciler's schedule rate (the API reads it to state the redelivery bound).",
    read_by: &[Serve, Api],
};

/// `--table`.
pub const TABLE: Spec = Spec {
    flag: "table",
    env: "FLOWGATE_TABLE",
    format: Format::Text,
    default: "flowgate",
    meaning: "The DynamoDB table (backend `aws`).",
    read_by: &[Serve, Operator, Api, Consumer, Reconciler],
};

/// `--queue`.
pub const QUEUE: Spec = Spec {
    flag: "queue",
    env: "FLOWGATE_QUEUE",
    format: Format::Text,
    default: "flowgate-requests",
    meaning: "The SQS queue (backend `aws`): its URL, or its name (then looked up once at start).",
    read_by: &[Serve, Operator, Api, Consumer, Reconciler],
};

/// `--dlq`.
pub const DLQ: Spec = Spec {
    flag: "dlq",
    env: "FLOWGATE_DLQ",
    format: Format::Text,
    default: "flowgate-requests-dlq",
    meaning: "The SQS dead-letter queue (backend `aws`): its URL, or its name.",
    read_by: &[Serve, Operator, Api, Consumer, Reconciler],
};

/// `--retention-days`.
pub const RETENTION_DAYS: Spec = Spec {
    flag: "retention-days",
    env: "FLOWGATE_RETENTION_DAYS",
    format: Format::Count {
        min: 1,
        max: 36_500,
    },
    default: "7",
    meaning: "Days a CREATED or ARCHIVED request is kept on DynamoDB before its TTL expires it. DEAD requests never expire.",
    read_by: &[Serve, Operator, Api, Consumer, Reconciler],
};

/// `--tenant-claim`.
pub const TENANT_CLAIM: Spec = Spec {
    flag: "tenant-claim",
    env: "FLOWGATE_TENANT_CLAIM",
    format: Format::Text,
    default: "tenant",
    meaning: "The JWT claim that names the tenant on the API function (the subject `sub` when it is absent).",
    read_by: &[Api],
};

/// `--faults`.
pub const FAULTS: Spec = Spec {
    flag: "faults",
    env: "FLOWGATE_FAULTS",
    format: Format::OptionalText,
    default: "",
    meaning: "Fault injection, `point=rate[:permanent][:after],...`; only builds with `--features faults` accept it (docs/operations.md).",
    read_by: &[Serve],
};

/// `--log-format`.
pub const LOG_FORMAT: Spec = Spec {
    flag: "log-format",
    env: "FLOWGATE_LOG_FORMAT",
    format: Format::Choice(&["text", "json"]),
    default: "text",
    meaning: "`json` writes one JSON object per line. `RUST_LOG` filters (default `info` for serve, `warn` for dlq).",
    read_by: &[Serve, Operator],
};

/// `--url`.
pub const URL: Spec = Spec {
    flag: "url",
    env: "FLOWGATE_URL",
    format: Format::Text,
    default: "http://127.0.0.1:8080",
    meaning: "Base URL of a running server, for the client commands.",
    read_by: &[Client],
};

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
