//! The disk side of `flowgate bench`, for a server on this machine whose data directory is
//! known: the disk's own fsync rate, and the queue backlog and log size sampled each second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flowgate_embedded::{FileSizes, Probe};

/// How long the fsync rate is measured.
const FSYNC_PROBE: Duration = Duration::from_secs(2);
/// What each probe write appends: one 4 KiB page, as a small group commit does.
const PAGE: [u8; 4096] = [0x5a; 4096];

/// Appends a page and syncs it (`fdatasync`, as SQLite does at a WAL commit), again and
/// again for `FSYNC_PROBE`, in a scratch file in `dir` (removed after): the rate this disk
/// makes writes durable one at a time.
pub(crate) fn fsync_rate(dir: &Path) -> std::io::Result<f64> {
    let path = dir.join(".flowgate-bench-fsync");
    let measured = (|| {
        let mut file = std::fs::File::create(&path)?;
        let started = Instant::now();
        let mut syncs = 0u64;
        while started.elapsed() < FSYNC_PROBE {
            file.write_all(&PAGE)?;
            file.sync_data()?;
            syncs += 1;
        }
        Ok(syncs as f64 / started.elapsed().as_secs_f64())
    })();
    let _ = std::fs::remove_file(&path);
    measured
}

/// One second's look at the server's data directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Messages accepted and not yet settled.
    pub(crate) backlog: u64,
    /// The database files' sizes.
    pub(crate) sizes: FileSizes,
}

/// Samples a data directory once a second on a thread of its own until stopped.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `dir`; `None` when its database cannot be opened.
    pub(crate) fn start(dir: &Path) -> Option<Self> {
        let probe = Probe::open(dir).ok()?;
        let dir = dir.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = Instant::now() + Duration::from_secs(1);
            while !stopping.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                next += Duration::from_secs(1);
                if let Ok(backlog) = probe.backlog() {
                    samples.push(Sample {
                        backlog,
                        sizes: FileSizes::of(&dir),
                    });
                }
            }
            samples
        });
        Some(Self { stop, thread })
    }

    /// Stops sampling and answers the samples, one per whole second.
    pub(crate) fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// How long after `since` the backlog reached zero, polled every 20 ms; `None` if it did
/// not within `timeout` or the database cannot be read.
pub(crate) fn wait_drained(dir: &Path, since: Instant, timeout: Duration) -> Option<Duration> {
    let probe = Probe::open(dir).ok()?;
    while since.elapsed() < timeout {
        if probe.backlog().ok()? == 0 {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The data directory to look at, if it holds a database.
pub(crate) fn known_dir(dir: &Path) -> Option<PathBuf> {
    Probe::open(dir).ok().map(|_| dir.to_owned())
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints the backlog each second, and the largest log seen.
pub(crate) fn report_samples(samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let curve: Vec<String> = samples.iter().map(|s| s.backlog.to_string()).collect();
    let wal = samples.iter().map(|s| s.sizes.wal).max().unwrap_or(0);
    let first = samples.first().map_or(0, |s| s.backlog);
    let last = samples.last().map_or(0, |s| s.backlog);
    println!(
        "  backlog each second (accepted, not yet created): {}",
        curve.join(" ")
    );
    println!(
        "  backlog first {first}, last {last}, max {}; WAL at most {:.1} MiB",
        samples.iter().map(|s| s.backlog).max().unwrap_or(0),
        mib(wal)
    );
}
