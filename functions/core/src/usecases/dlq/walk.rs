//! Walking the dead-letter queue by claims, the way replay and archive visit letters: each
//! letter is handled by at most one walk at a time, and nothing is consumed by looking.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use tracing::warn;

use super::{LetterFilter, LetterSummary, Rate};
use crate::error::BackendError;
use crate::ports::{DeadLetter, Queue};

/// How long a walk holds the letters it claimed. Letters it skips stay held until it ends,
/// so a long walk (a slow `--rate`) asks for a longer hold.
pub fn hold_for(max: Option<usize>, rate: Option<Rate>) -> Duration {
    const BASE: Duration = Duration::from_secs(300);
    const MOST: Duration = flowgate_settings::specs::MAX_VISIBILITY;
    let Some(rate) = rate else {
        return BASE;
    };
    let expected = max.unwrap_or(10_000) as f64 / rate.get();
    (BASE + Duration::from_secs_f64(expected.min(MOST.as_secs_f64()))).min(MOST)
}

/// Claims letters batch by batch and yields those the filter selects, up to `max`. Every
/// other letter claimed, and every letter handed back with [`Walk::keep`], stays held until
/// [`Walk::finish`] releases it.
pub struct Walk<'a> {
    queue: &'a dyn Queue,
    filter: &'a LetterFilter,
    max: Option<usize>,
    hold: Duration,
    seen: HashSet<String>,
    held: Vec<DeadLetter>,
    taken: usize,
    done: bool,
    before: Option<chrono::DateTime<Utc>>,
}

impl<'a> Walk<'a> {
    /// A walk over `queue`.
    pub fn new(
        queue: &'a dyn Queue,
        filter: &'a LetterFilter,
        max: Option<usize>,
        hold: Duration,
    ) -> Self {
        Self {
            queue,
            filter,
            max,
            hold,
            seen: HashSet::new(),
            held: Vec::new(),
            taken: 0,
            done: false,
            before: None,
        }
    }

    /// Selects only letters dead-lettered before `instant`: a letter that fails again while
    /// the walk runs (a replay's own, back at once) is left for the next walk.
    pub fn only_before(mut self, instant: chrono::DateTime<Utc>) -> Self {
        self.before = Some(instant);
        self
    }

    /// The next selected letters; empty when the walk is over.
    pub async fn next(&mut self) -> Result<Vec<(DeadLetter, LetterSummary)>, BackendError> {
        while !self.done && self.max.is_none_or(|m| self.taken < m) {
            let batch = self.queue.dlq_claim(10, self.hold).await?;
            if batch.is_empty() {
                break;
            }
            let now = Utc::now();
            let mut fresh = false;
            let mut chosen = Vec::new();
            for letter in batch {
                // A letter seen before came back because its hold ran out: keep holding it.
                if !self.seen.insert(letter.message_id.clone()) {
                    self.held.push(letter);
                    continue;
                }
                fresh = true;
                let summary = LetterSummary::of(&letter, now);
                let older = self.before.is_none_or(|b| letter.dead_lettered_at < b);
                if older && self.filter.matches(&summary) && self.max.is_none_or(|m| self.taken < m)
                {
                    self.taken += 1;
                    chosen.push((letter, summary));
                } else {
                    self.held.push(letter);
                }
            }
            // Only letters already seen: every other letter is held by someone.
            self.done = !fresh;
            if !chosen.is_empty() {
                return Ok(chosen);
            }
        }
        self.done = true;
        Ok(Vec::new())
    }

    /// Leaves `letter` in the queue: it is released when the walk finishes.
    pub fn keep(&mut self, letter: DeadLetter) {
        self.held.push(letter);
    }

    /// Releases every held letter. Call it whether or not the walk succeeded.
    pub async fn finish(self) {
        for letter in self.held {
            if let Err(e) = self.queue.dlq_release(&letter).await {
                warn!(message_id = %letter.message_id, error = %e.chain(),
                    "could not release a dead letter; it becomes visible when its hold ends");
            }
        }
    }
}
