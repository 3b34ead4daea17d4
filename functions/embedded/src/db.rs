//! The SQLite file: one writer thread with group commit, and a pool of readers.
//!
//! Every write is a job sent to the writer thread. The writer takes all jobs waiting, runs
//! each in its own savepoint inside one transaction, commits once (one fsync, as
//! `synchronous=FULL` in WAL mode syncs the log at commit), and only then answers the jobs.
//! Durability therefore costs one fsync per batch, not per request.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;
use tracing::error;

use flowgate_core::BackendError;
use flowgate_core::metrics::{Labels, Metric, Metrics};

/// Jobs committed together at most.
const MAX_BATCH: usize = 1024;
/// The write-ahead log's size (bytes) kept after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT_MS: u64 = 10_000;

/// A database failure, before it is classified for a port.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this job was in could not commit.
    #[error("commit failed: {0}")]
    Commit(Arc<rusqlite::Error>),
    /// The writer thread is gone.
    #[error("the embedded store's writer has stopped")]
    WriterGone,
    /// A blocking read task died.
    #[error("read task failed: {0}")]
    ReadTask(String),
}

impl DbError {
    /// Classifies the failure of `op` as retryable (locks, I/O, a full disk) or permanent.
    pub fn into_backend(self, op: &'static str) -> BackendError {
        let code = match &self {
            Self::Sqlite(e) => e.sqlite_error_code(),
            Self::Commit(e) => e.sqlite_error_code(),
            Self::WriterGone | Self::ReadTask(_) => {
                return BackendError::retryable(op, self);
            }
        };
        use rusqlite::ErrorCode as C;
        match code {
            Some(
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen
                | C::OutOfMemory,
            ) => BackendError::retryable(op, self),
            _ => BackendError::permanent(op, self),
        }
    }
}

trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Finish>;
    fn abort(self: Box<Self>, err: Arc<rusqlite::Error>);
}

trait Finish: Send {
    fn finish(self: Box<Self>, commit: Result<(), Arc<rusqlite::Error>>);
}

struct Pending<F, R> {
    work: F,
    reply: oneshot::Sender<Result<R, DbError>>,
}

struct Ran<R> {
    result: Result<R, DbError>,
    reply: oneshot::Sender<Result<R, DbError>>,
}

impl<F, R> Job for Pending<F, R>
where
    F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    R: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Finish> {
        let result = in_savepoint(conn, self.work);
        Box::new(Ran {
            result,
            reply: self.reply,
        })
    }

    fn abort(self: Box<Self>, err: Arc<rusqlite::Error>) {
        let _ = self.reply.send(Err(DbError::Commit(err)));
    }
}

impl<R: Send + 'static> Finish for Ran<R> {
    fn finish(self: Box<Self>, commit: Result<(), Arc<rusqlite::Error>>) {
        let outcome = match commit {
            Ok(()) => self.result,
            Err(e) => Err(DbError::Commit(e)),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Runs one job so that its failure undoes only its own writes.
fn in_savepoint<R>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> Result<R, DbError> {
    // Prepared once and kept: a savepoint per job, parsed per job, cost the writer more
    // than some of the jobs themselves.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match work(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e.into())
        }
    }
}

/// What the writer has done since the database was opened: the work a guard test holds
/// to a ceiling per start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterCounts {
    /// Jobs run (each one `Db::write` call).
    pub jobs: u64,
    /// Transactions committed (each a group of jobs, one fsync).
    pub commits: u64,
    /// SQL statements the writer ran, savepoints and commits included.
    pub statements: u64,
}

#[derive(Default)]
struct Counters {
    jobs: std::sync::atomic::AtomicU64,
    commits: std::sync::atomic::AtomicU64,
    statements: std::sync::atomic::AtomicU64,
}

thread_local! {
    /// Statements run on this thread's connection: the writer's, on the writer thread.
    static STATEMENTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_statement(event: rusqlite::trace::TraceEvent<'_>) {
    if let rusqlite::trace::TraceEvent::Stmt(..) = event {
        STATEMENTS.with(|n| n.set(n.get() + 1));
    }
}

/// The database: a writer thread and a bounded pool of read connections.
pub struct Db {
    counters: Arc<Counters>,
    path: PathBuf,
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per read connection the pool may hold: reads beyond it wait.
    reads: Arc<tokio::sync::Semaphore>,
    /// Read connections opened so far (never more than the pool's size).
    opened: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the writer reports its batches, once a host says.
    metrics: Arc<OnceLock<Arc<dyn Metrics>>>,
}

impl Db {
    /// Opens (creating if needed) the database file and starts its writer; reads use at
    /// most `read_pool` connections.
    pub fn open(path: &Path, read_pool: usize) -> Result<Self, DbError> {
        let writer = open_migrated(path)?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let metrics = Arc::new(OnceLock::new());
        let sink = metrics.clone();
        let counters = Arc::new(Counters::default());
        let counted = counters.clone();
        std::thread::Builder::new()
            .name("flowgate-writer".into())
            .spawn(move || write_loop(writer, rx, &sink, &counted))
            .map_err(|e| DbError::ReadTask(format!("could not start the writer thread: {e}")))?;
        Ok(Self {
            counters,
            path: path.to_owned(),
            jobs: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            reads: Arc::new(tokio::sync::Semaphore::new(read_pool.max(1))),
            opened: Arc::default(),
            metrics,
        })
    }

    /// Reports each group commit's size and duration to `metrics` (once; later calls are
    /// ignored).
    pub fn measure_with(&self, metrics: Arc<dyn Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Runs `work` in the next group commit; answers after the commit is durable.
    pub async fn write<R, F>(&self, work: F) -> Result<R, DbError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending { work, reply });
        self.jobs.send(job).map_err(|_| DbError::WriterGone)?;
        answer.await.map_err(|_| DbError::WriterGone)?
    }

    /// What the writer has done so far.
    pub fn writer_counts(&self) -> WriterCounts {
        use std::sync::atomic::Ordering::Relaxed;
        WriterCounts {
            jobs: self.counters.jobs.load(Relaxed),
            commits: self.counters.commits.load(Relaxed),
            statements: self.counters.statements.load(Relaxed),
        }
    }

    /// How many read connections have been opened.
    pub fn readers_opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `work` on a read connection (a consistent WAL snapshot) off the async threads.
    pub async fn read<R, F>(&self, work: F) -> Result<R, DbError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let opened = self.opened.clone();
        let permit = self
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DbError::ReadTask(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    open_connection(&path, true)?
                }
            };
            let result = work(&conn).map_err(DbError::from);
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| DbError::ReadTask(e.to_string()))?
    }
}

/// The writer's connection, on a file brought to the current schema. Another process
/// opening the same fresh file at the same moment can make SQLite answer "locked" at once
/// (it does not wait where waiting could deadlock): that is retried for a while.
fn open_migrated(path: &Path) -> Result<Connection, DbError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(BUSY_TIMEOUT_MS);
    loop {
        let attempt = open_connection(path, false).and_then(|conn| {
            crate::schema::migrate(&conn)
                .map(|()| conn)
                .map_err(DbError::from)
        });
        match attempt {
            Err(DbError::Sqlite(e))
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection, DbError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    // FULL: in WAL mode the log is fsync'd at every commit, so a commit is durable.
    conn.pragma_update(None, "synchronous", "FULL")?;
    if !read_only {
        // The writer keeps hot B-tree pages (64 MiB: the interior pages and much of the
        // random-keyed request index of a few million starts) in its own cache instead of
        // re-reading them through the kernel, and
        // checkpoints every 4,000 pages (16 MiB) of WAL: rarer than SQLite's default, so a
        // page rewritten many times is copied back once, but short enough to bound stalls.
        // (A separate checkpointer thread never lets the WAL reset under steady load.)
        conn.pragma_update(None, "cache_size", -65_536)?;
        // A job's savepoint journal stays in memory: on disk, a batch large enough to
        // spill it would create and delete a temporary file per job.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "wal_autocheckpoint", 4_000)?;
        // A log that grew past this (a long reader held checkpoints back) is cut back to it
        // once a checkpoint completes, so a burst does not keep its disk space.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    }
    if read_only {
        // Readers map the file rather than copy pages through read(2). The writer does not:
        // writing through a mapped file costs more in page write-back than it saves.
        conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn write_loop(
    conn: Connection,
    jobs: mpsc::Receiver<Box<dyn Job>>,
    metrics: &OnceLock<Arc<dyn Metrics>>,
    counters: &Counters,
) {
    use std::sync::atomic::Ordering::Relaxed;
    conn.trace_v2(
        rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
        Some(count_statement),
    );
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            error!(error = %e, jobs = batch.len(), "could not begin a write transaction");
            let e = Arc::new(e);
            for job in batch {
                job.abort(e.clone());
            }
            continue;
        }
        let ran: Vec<Box<dyn Finish>> = batch.into_iter().map(|job| job.run(&conn)).collect();
        let committing = Instant::now();
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            error!(error = %e, jobs = ran.len(), "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            Arc::new(e)
        });
        if let Some(m) = metrics.get() {
            let took = committing.elapsed().as_secs_f64();
            m.record(Metric::WriterBatch, &Labels::NONE, ran.len() as f64);
            m.record(Metric::WriterCommit, &Labels::NONE, took);
        }
        counters.jobs.fetch_add(ran.len() as u64, Relaxed);
        counters
            .commits
            .fetch_add(u64::from(commit.is_ok()), Relaxed);
        counters
            .statements
            .store(STATEMENTS.with(std::cell::Cell::get), Relaxed);
        for finished in ran {
            finished.finish(commit.clone());
        }
    }
}
