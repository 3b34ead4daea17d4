//! A budget of steps and time for a search that a client's input shapes (a cron walk, a
//! backfill's expansion): it stops when either runs out, and says so.

use std::time::{Duration, Instant};

/// How much a search may do.
#[derive(Debug, Clone)]
pub struct Budget {
    left: u64,
    spent: u64,
    deadline: Option<Instant>,
}

/// A search ran out of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the search ran out of its budget ({steps} steps)")]
pub struct Exhausted {
    /// Steps spent before it stopped.
    pub steps: u64,
}

/// How often the clock is read: every this many steps.
const CLOCK_EVERY: u64 = 1024;

impl Budget {
    /// At most `steps` steps, with no time limit.
    pub fn steps(steps: u64) -> Self {
        Self {
            left: steps,
            spent: 0,
            deadline: None,
        }
    }

    /// At most `steps` steps, and no longer than `time`.
    pub fn steps_and_time(steps: u64, time: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(time),
            ..Self::steps(steps)
        }
    }

    /// Spends one step.
    pub fn step(&mut self) -> Result<(), Exhausted> {
        let out_of_time = self.spent % CLOCK_EVERY == CLOCK_EVERY - 1
            && self.deadline.is_some_and(|d| Instant::now() >= d);
        if self.left == 0 || out_of_time {
            return Err(Exhausted { steps: self.spent });
        }
        self.left -= 1;
        self.spent += 1;
        Ok(())
    }

    /// Steps spent so far.
    pub fn spent(&self) -> u64 {
        self.spent
    }
}
