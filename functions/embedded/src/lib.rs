//! Flowgate's embedded backend: the store, the queue and the dead-letter queue in one SQLite
//! file, durable (fsync'd) before any call returns, with group commit for throughput.

mod backfills;
mod codec;
mod compact;
mod db;
mod dlq;
mod handoff;
mod probe;
mod queue;
mod row;
mod runs;
mod schedules;
mod schema;
mod store;
mod tokens;
mod workflow_cache;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use db::{DbError, WriterCounts};
pub use probe::{FileSizes, Probe};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "flowgate.sqlite3";

/// Settings of the embedded queue.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// How long a delivered message stays invisible before it is delivered again.
    pub visibility_timeout: Duration,
    /// Deliveries after which an unhandled message moves to the dead-letter queue.
    pub max_receive_count: u32,
    /// The most read connections open at once.
    pub read_pool: usize,
    /// Each tenant's weight when several have starts waiting (a tenant not named weighs 1).
    pub tenant_weights: Vec<(String, u32)>,
}

impl EmbeddedConfig {
    /// The queue a host's settings describe.
    pub fn from_settings(settings: &flowgate_settings::Settings) -> Self {
        Self {
            visibility_timeout: settings.visibility_timeout,
            max_receive_count: settings.max_receive_count,
            read_pool: settings.read_pool,
            tenant_weights: settings.tenant_weights.clone(),
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self::from_settings(&flowgate_settings::Settings::defaults())
    }
}

/// Failure to open a data directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("cannot open {path}: {source}")]
    Db {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DbError,
    },
}

/// What waits in the queues: a sample for the operator's gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Messages on the main queue (waiting or in flight), and starts whose own row is on it.
    pub queue: u64,
    /// Letters in the dead-letter queue.
    pub dlq: u64,
    /// When the oldest message on the main queue was sent (or start accepted).
    pub oldest_sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// By workflow (of every tenant) under a concurrency limit or a time-out: its unfinished
    /// runs holding a slot, and its starts waiting for one.
    pub runs: std::collections::BTreeMap<String, (u64, u64)>,
}

/// The embedded backend; implements both [`flowgate_core::ports::Store`] and
/// [`flowgate_core::ports::Queue`]. Several processes may open the same directory.
pub struct Embedded {
    db: db::Db,
    config: EmbeddedConfig,
    /// Wakes a waiting `receive` in this process when a message is sent.
    sent: Notify,
    /// Workflow definitions, read once a second at most.
    workflows: workflow_cache::WorkflowCache,
    /// Starts handed to this process's consumer in memory.
    handoff: handoff::HandOff,
    /// Starts this process took off the queue, whose acknowledgement costs no write.
    settled: handoff::Settled,
}

impl Embedded {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path, config: EmbeddedConfig) -> Result<Arc<Self>, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::Dir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db = db::Db::open(&path, config.read_pool)
            .map_err(|source| OpenError::Db { path, source })?;
        let handoff = handoff::HandOff::weighted(&config.tenant_weights);
        Ok(Arc::new(Self {
            db,
            config,
            sent: Notify::new(),
            workflows: workflow_cache::WorkflowCache::default(),
            handoff,
            settled: handoff::Settled::default(),
        }))
    }

    /// What the writer has done since the store was opened: jobs, commits, statements.
    pub fn writer_counts(&self) -> WriterCounts {
        self.db.writer_counts()
    }

    /// Bytes of the database file in use (its pages less the free ones), as the last
    /// commit left it, whether or not the log was copied back yet.
    pub async fn bytes_in_use(&self) -> Result<u64, flowgate_core::BackendError> {
        self.db
            .read(|conn| {
                let pragma = |name: &str| -> rusqlite::Result<i64> {
                    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                };
                let used =
                    (pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?;
                u64::try_from(used).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, used))
            })
            .await
            .map_err(|e| e.into_backend("store.bytes_in_use"))
    }

    /// Reports the writer's group commits (their sizes and durations) to `metrics`.
    pub fn measure_with(&self, metrics: Arc<dyn flowgate_core::metrics::Metrics>) {
        self.db.measure_with(metrics);
    }

    /// How many messages wait on the queue and in the dead-letter queue, and when the
    /// oldest waiting one was sent.
    pub async fn depths(&self) -> Result<QueueDepths, flowgate_core::BackendError> {
        self.db
            .read(|conn| {
                let mut depths = QueueDepths::default();
                let mut statement = conn.prepare_cached(
                    "SELECT queue, count(*), min(sent_at) FROM messages GROUP BY queue",
                )?;
                let mut rows = statement.query([])?;
                let mut oldest_us: Option<i64> = None;
                while let Some(row) = rows.next()? {
                    let (queue, count, oldest): (String, u64, Option<i64>) =
                        (row.get(0)?, row.get(1)?, row.get(2)?);
                    match queue.as_str() {
                        "main" => {
                            depths.queue += count;
                            oldest_us = oldest;
                        }
                        _ => depths.dlq += count,
                    }
                }
                let (count, oldest): (u64, Option<i64>) = conn
                    .prepare_cached(
                        &format!(
                        "SELECT count(*), min(accepted_at) FROM starts WHERE {} AND due_at IS NOT NULL",
                        crate::queue::LIVE
                    ),
                    )?
                    .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                depths.queue += count;
                let oldest = match (oldest_us, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                depths.oldest_sent_at = oldest.and_then(chrono::DateTime::from_timestamp_micros);
                for (table, waiting) in [("run_slots", false), ("run_waits", true)] {
                    let sql = format!(
                        "SELECT substr(grp, 1, instr(grp, char(31)) - 1), count(*) FROM {table} \
                         WHERE grp IS NOT NULL GROUP BY 1"
                    );
                    let mut statement = conn.prepare_cached(&sql)?;
                    let mut rows = statement.query([])?;
                    while let Some(row) = rows.next()? {
                        let (workflow, count): (String, u64) = (row.get(0)?, row.get(1)?);
                        let entry = depths.runs.entry(workflow).or_default();
                        if waiting {
                            entry.1 += count;
                        } else {
                            entry.0 += count;
                        }
                    }
                }
                Ok(depths)
            })
            .await
            .map_err(|e| e.into_backend("depths"))
    }

    /// How many read connections the store has opened: never more than its read pool.
    pub fn readers_opened(&self) -> usize {
        self.db.readers_opened()
    }
}
