//! The [`Backfills`] port on DynamoDB. A backfill is one record item,
//! `T#{tenant}#BF#{id}` / `BF`, version-guarded, and its dates in chunk items beside it
//! (`D#0000`, ...): 100,000 dates do not fit one 400 KB item. The dates never change after
//! the backfill is created, so they are written once, before the record, and a reader never
//! sees a record without them. A running backfill's record carries the sparse `gsi1` key
//! `BACKFILLS` / `{created_at}#{tenant}#{id}`, which is how runners find it.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use flowgate_core::BackendError;
use flowgate_core::ports::{BackfillRecord, BackfillState, Backfills};

use super::{DynamoStore, Item, s};
use crate::error::classify;
use crate::items::stamp;

/// The `gsi1` partition of running backfills.
const RUNNING: &str = "BACKFILLS";
const RECORD_SK: &str = "BF";
const CHUNK_PREFIX: &str = "D#";
/// Dates per chunk item: about 130 KB of RFC 3339 text, well inside the item limit.
const CHUNK: usize = 5_000;

fn key(tenant: &str, id: &str) -> String {
    format!("T#{tenant}#BF#{id}")
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

impl DynamoStore {
    /// Writes the dates' chunk items (before the record that counts them).
    async fn put_date_chunks(&self, b: &BackfillRecord) -> Result<usize, BackendError> {
        const OP: &str = "backfills.put";
        let chunks: Vec<&[DateTime<Utc>]> = b.dates.chunks(CHUNK).collect();
        for (n, dates) in chunks.iter().enumerate() {
            let text = serde_json::to_string(dates).map_err(|e| BackendError::permanent(OP, e))?;
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(key(&b.tenant, &b.id)))
                .item("sk", s(format!("{CHUNK_PREFIX}{n:04}")))
                .item("dates", s(text))
                .send()
                .await
                .map_err(|e| classify(OP, e))?;
        }
        Ok(chunks.len())
    }

    /// Reads the dates back, in order.
    async fn date_chunks(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<DateTime<Utc>>, BackendError> {
        const OP: &str = "backfills.get";
        let mut dates = Vec::new();
        for item in self.query_prefix(OP, key(tenant, id), CHUNK_PREFIX).await? {
            let text = item
                .get("dates")
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| BackendError::permanent(OP, "a date chunk without dates"))?;
            let chunk: Vec<DateTime<Utc>> =
                serde_json::from_str(text).map_err(|e| BackendError::permanent(OP, e))?;
            dates.extend(chunk);
        }
        Ok(dates)
    }

    /// The record item: the record less its dates, with the running index key while it runs.
    fn backfill_item(b: &BackfillRecord, chunks: usize) -> Result<Item, BackendError> {
        let without_dates = BackfillRecord {
            dates: Vec::new(),
            ..b.clone()
        };
        let text = serde_json::to_string(&without_dates)
            .map_err(|e| BackendError::permanent("backfills.put", e))?;
        let mut item = Item::from([
            ("pk".to_owned(), s(key(&b.tenant, &b.id))),
            ("sk".to_owned(), s(RECORD_SK)),
            (
                "version".to_owned(),
                AttributeValue::N(b.version.to_string()),
            ),
            ("chunks".to_owned(), AttributeValue::N(chunks.to_string())),
            (
                "dates_total".to_owned(),
                AttributeValue::N(b.dates.len().to_string()),
            ),
            ("record".to_owned(), s(text)),
        ]);
        // Every backfill is listed under its tenant in `gsi2`, newest last.
        item.insert("gsi2pk".to_owned(), s(backfills_of(&b.tenant)));
        item.insert(
            "gsi2sk".to_owned(),
            s(format!("{}#{}", stamp(b.created_at), b.id)),
        );
        if b.state == BackfillState::Running {
            item.insert("gsi1pk".to_owned(), s(RUNNING));
            item.insert(
                "gsi1sk".to_owned(),
                s(format!("{}#{}#{}", stamp(b.created_at), b.tenant, b.id)),
            );
        }
        Ok(item)
    }
}

#[async_trait]
impl Backfills for DynamoStore {
    async fn put_backfill(
        &self,
        b: &BackfillRecord,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        const OP: &str = "backfills.put";
        let chunks = match expected {
            None => self.put_date_chunks(b).await?,
            // The dates are the ones written at creation.
            Some(_) => b.dates.len().div_ceil(CHUNK),
        };
        let item = Self::backfill_item(b, chunks)?;
        self.put_versioned(OP, item, expected).await
    }

    async fn get_backfill(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<BackfillRecord>, BackendError> {
        const OP: &str = "backfills.get";
        let Some(item) = self.get(OP, key(tenant, id), RECORD_SK).await? else {
            return Ok(None);
        };
        let text = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| BackendError::permanent(OP, "a backfill item without its record"))?;
        let mut record: BackfillRecord =
            serde_json::from_str(text).map_err(|e| BackendError::permanent(OP, e))?;
        record.dates = self.date_chunks(tenant, id).await?;
        let total = number(&item, "dates_total").ok_or_else(|| {
            BackendError::permanent(OP, format!("backfill {id}: the item has no dates_total"))
        })?;
        if record.dates.len() as u64 != total {
            return Err(BackendError::permanent(
                OP,
                format!(
                    "backfill {id} has {} of its {total} dates",
                    record.dates.len()
                ),
            ));
        }
        Ok(Some(record))
    }

    async fn running_backfills(&self, limit: usize) -> Result<Vec<BackfillRecord>, BackendError> {
        const OP: &str = "backfills.running";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(RUNNING))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let mut running = Vec::new();
        for item in out.items() {
            let Some((tenant, id)) = item
                .get("gsi1sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|k| k.split_once('#').map(|(_, rest)| rest))
                .and_then(|rest| rest.split_once('#'))
            else {
                continue;
            };
            // The index lags the table: read each one consistently, and keep it if it
            // still runs.
            if let Some(b) = self.get_backfill(tenant, id).await?
                && b.state == BackfillState::Running
            {
                running.push(b);
            }
        }
        Ok(running)
    }

    async fn list_backfills(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<BackfillRecord>, BackendError> {
        const OP: &str = "backfills.list";
        let items = self
            .query_gsi2(OP, backfills_of(tenant), true, limit)
            .await?;
        let mut listed = Vec::new();
        for item in &items {
            let Some(id) = item
                .get("gsi2sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|k| k.split_once('#').map(|(_, id)| id))
            else {
                continue;
            };
            // Read each one whole and consistently: the index lags the table.
            if let Some(b) = self.get_backfill(tenant, id).await? {
                listed.push(b);
            }
        }
        Ok(listed)
    }
}

/// The `gsi2` partition of a tenant's backfills (no workflow code holds `#`, so it never
/// meets a workflow's instance partition).
fn backfills_of(tenant: &str) -> String {
    format!("T#{tenant}#BACKFILLS")
}
