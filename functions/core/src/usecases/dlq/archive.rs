//! Archive and restore: dead letters move to a durable file and back. Nothing is deleted
//! from the queue before the sink has made it durable.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::LetterFilter;
use super::walk::{Walk, hold_for};
use crate::error::{BackendError, Error, StoreError};
use crate::metrics::Metric;
use crate::model::{EventKind, HistoryEvent, RequestRecord, RequestStatus};
use crate::ports::{DeadLetter, RequestUpdate};
use crate::usecases::Flowgate;

/// The archive format's version, the first field of every line.
pub const ARCHIVE_VERSION: u32 = 1;

/// One archived dead letter: a line of the JSONL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedLetter {
    /// [`ARCHIVE_VERSION`].
    pub version: u32,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// The letter as it was in the dead-letter queue.
    pub letter: DeadLetter,
    /// The request record as it was before archiving, if one existed.
    pub record: Option<RequestRecord>,
}

/// Where archived letters go. `write` must return only once they are durable (fsync'd).
pub trait ArchiveSink: Send {
    /// Durably appends `letters`.
    fn write(&mut self, letters: &[ArchivedLetter]) -> std::io::Result<()>;
    /// Names the archive in history events.
    fn name(&self) -> String;
}

/// The summary of an archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// Letters written and removed from the queue.
    pub archived: u64,
    /// Letters written but left in the queue (or not written): each with why.
    pub failed: Vec<String>,
}

/// The summary of a restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Letters put back in the dead-letter queue.
    pub restored: u64,
    /// Letters whose request is no longer archived (restored or re-driven before).
    pub skipped: u64,
    /// Letters that could not be restored: each with why.
    pub failed: Vec<String>,
}

impl Flowgate {
    /// Writes the letters `filter` selects (up to `max`) to `sink`, then removes them from the
    /// queue and marks their requests `ARCHIVED`.
    pub async fn dlq_archive(
        &self,
        filter: &LetterFilter,
        max: Option<usize>,
        sink: &mut dyn ArchiveSink,
    ) -> Result<ArchiveReport, Error> {
        let mut report = ArchiveReport::default();
        let name = sink.name();
        let mut walk = Walk::new(self.queue.as_ref(), filter, max, hold_for(max, None));
        let result = async {
            loop {
                let batch = walk.next().await?;
                if batch.is_empty() {
                    return Ok(());
                }
                let mut lines = Vec::with_capacity(batch.len());
                for (letter, summary) in batch {
                    let record = match (&summary.tenant, &summary.request_id) {
                        (Some(t), Some(r)) => match self.store.get_request(t, r).await {
                            Ok(record) => record,
                            Err(e) => {
                                report
                                    .failed
                                    .push(format!("{}: {}", letter.message_id, e.chain()));
                                walk.keep(letter);
                                continue;
                            }
                        },
                        _ => None,
                    };
                    lines.push(ArchivedLetter {
                        version: ARCHIVE_VERSION,
                        archived_at: Utc::now(),
                        letter,
                        record,
                    });
                }
                if let Err(e) = sink.write(&lines) {
                    for line in lines {
                        walk.keep(line.letter);
                    }
                    return Err(Error::Sink(e));
                }
                for line in lines {
                    match self.retire(&line, &name).await {
                        Ok(()) => report.archived += 1,
                        Err(e) => {
                            report.failed.push(format!(
                                "{}: {}",
                                line.letter.message_id,
                                e.chain()
                            ));
                            walk.keep(line.letter);
                        }
                    }
                }
            }
        }
        .await;
        walk.finish().await;
        result?;
        let failed = report.failed.len() as u64;
        let counts = [("archived", report.archived), ("archive_failed", failed)];
        self.measure_outcomes(Metric::DlqArchive, &counts);
        info!(stage = "dlq_archive", archived = report.archived, failed = report.failed.len(),
            archive = %name, "dead-letter archive finished");
        Ok(report)
    }

    /// Marks an archived letter's request `ARCHIVED`, then removes the letter.
    async fn retire(&self, line: &ArchivedLetter, archive: &str) -> Result<(), BackendError> {
        if let Some(record) = &line.record
            && !record.status.has_instance()
        {
            let update = RequestUpdate {
                set_status: Some(RequestStatus::Archived),
                ..RequestUpdate::event(HistoryEvent::now(
                    EventKind::Archived,
                    format!(
                        "dead letter {} archived to {archive}",
                        line.letter.message_id
                    ),
                ))
            };
            // No `only_if`: this applies whatever the status is (a record that vanished is
            // in the archive line all the same).
            self.store
                .update_request(&record.tenant, &record.request_id, &update)
                .await?;
            info!(stage = "archived", tenant = %record.tenant, request_id = %record.request_id,
                message_id = %line.letter.message_id, "dead letter archived");
        }
        self.queue.dlq_delete(&line.letter).await
    }

    /// Puts archived letters back in the dead-letter queue and their requests back to `DEAD`.
    /// A letter whose request is no longer `ARCHIVED` is skipped, and so is a record-less
    /// (poison) letter whose body is already in the queue, so restoring a file twice does not
    /// duplicate letters. A request whose record expired is recreated from the file.
    pub async fn dlq_restore(&self, lines: &[ArchivedLetter], archive: &str) -> RestoreReport {
        let mut report = RestoreReport::default();
        let mut present = HashSet::new();
        if lines.iter().any(|l| l.record.is_none()) {
            match self.queue.dlq_peek(super::MAX_SCAN).await {
                Ok(letters) => present.extend(letters.into_iter().map(|l| l.body)),
                Err(e) => {
                    report
                        .failed
                        .push(format!("cannot read the dead-letter queue: {}", e.chain()));
                    return report;
                }
            }
        }
        for line in lines {
            match self.restore_one(line, archive, &mut present).await {
                Ok(true) => report.restored += 1,
                Ok(false) => report.skipped += 1,
                Err(e) => {
                    warn!(message_id = %line.letter.message_id, error = %e.chain(), "restore failed");
                    report
                        .failed
                        .push(format!("{}: {}", line.letter.message_id, e.chain()));
                }
            }
        }
        let failed = report.failed.len() as u64;
        let counts = [("restored", report.restored), ("restore_failed", failed)];
        self.measure_outcomes(Metric::DlqArchive, &counts);
        info!(stage = "dlq_restore", restored = report.restored, skipped = report.skipped,
            failed = report.failed.len(), archive = %archive, "dead-letter restore finished");
        report
    }

    async fn restore_one(
        &self,
        line: &ArchivedLetter,
        archive: &str,
        present: &mut HashSet<String>,
    ) -> Result<bool, BackendError> {
        let event = HistoryEvent::now(
            EventKind::Restored,
            format!(
                "dead letter {} restored from {archive}",
                line.letter.message_id
            ),
        );
        let Some(archived) = &line.record else {
            // A poison letter has no record to tell whether it was restored before: the
            // queue holding the same body does.
            if present.contains(&line.letter.body) {
                return Ok(false);
            }
            self.queue.dlq_restore(&line.letter).await?;
            present.insert(line.letter.body.clone());
            return Ok(true);
        };
        let current = self
            .store
            .get_request(&archived.tenant, &archived.request_id)
            .await?;
        match current.map(|c| c.status) {
            Some(RequestStatus::Archived) => {
                // The letter first: a failure after it leaves a duplicate letter, never a
                // request that says DEAD with no letter to replay.
                self.queue.dlq_restore(&line.letter).await?;
                self.unarchive(archived, event).await?;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                self.queue.dlq_restore(&line.letter).await?;
                let mut record = archived.clone();
                let _ = record.apply(&RequestUpdate {
                    set_status: Some(RequestStatus::Dead),
                    ..RequestUpdate::event(event.clone())
                });
                match self.store.create_request(&record, None).await {
                    Ok(_) => Ok(true),
                    // It came back meanwhile: an archived one still goes back to DEAD, so
                    // that a second restore finds it restored.
                    Err(StoreError::AlreadyExists { .. }) => {
                        self.unarchive(archived, event).await?;
                        Ok(true)
                    }
                    Err(StoreError::Backend(e)) => Err(e),
                }
            }
        }
    }
}

impl Flowgate {
    /// Puts an `ARCHIVED` request back to `DEAD`, with its `restored` event.
    async fn unarchive(
        &self,
        archived: &RequestRecord,
        event: HistoryEvent,
    ) -> Result<(), BackendError> {
        let update = RequestUpdate {
            only_if: Some(RequestStatus::Archived),
            set_status: Some(RequestStatus::Dead),
            ..RequestUpdate::event(event)
        };
        self.store
            .update_request(&archived.tenant, &archived.request_id, &update)
            .await?;
        Ok(())
    }
}

/// Reads an archive's lines, refusing the whole file if any line is not an archived letter.
pub fn parse_archive(text: &str) -> Result<Vec<ArchivedLetter>, Error> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let at = format!("line {}", n + 1);
            let letter: ArchivedLetter = serde_json::from_str(line)
                .map_err(|e| Error::invalid(&at, format!("is not an archived dead letter: {e}")))?;
            if letter.version != ARCHIVE_VERSION {
                return Err(Error::invalid(
                    &at,
                    format!(
                        "has archive version {} (this build reads {ARCHIVE_VERSION})",
                        letter.version
                    ),
                ));
            }
            Ok(letter)
        })
        .collect()
}
