//! The budgeted pool: work whose cost a client's input decides (a schema check, a backfill's
//! expansion) runs here, on blocking threads, at most one job per core at a time, so that
//! the async workers that answer every other request are never held by it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Why a pooled job gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// It ran past its time budget; its answer, if it ever comes, is dropped.
    #[error("took longer than its budget ({})", humantime::format_duration(*.0))]
    OverBudget(Duration),
    /// It panicked.
    #[error("the job panicked: {0}")]
    Panicked(String),
}

/// Blocking workers, one per core.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    workers: Arc<Semaphore>,
}

impl Default for BlockingPool {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            workers: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl BlockingPool {
    /// Runs `job` on a blocking worker once one is free, and waits up to `budget` for its
    /// answer. A job that can stop itself (a search with a [`crate::schedule::Budget`]
    /// that shares the deadline) should: a job past the budget keeps its worker until it
    /// ends.
    pub async fn run<T: Send + 'static>(
        &self,
        budget: Duration,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let permit = self.workers.clone().acquire_owned().await;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        });
        match tokio::time::timeout(budget, task).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(panicked)) => Err(PoolError::Panicked(panicked.to_string())),
            Err(_) => Err(PoolError::OverBudget(budget)),
        }
    }
}
