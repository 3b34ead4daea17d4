//! The [`Tokens`] port over the SQLite file: the `tokens` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use flowgate_core::BackendError;
use flowgate_core::ports::{TokenRecord, Tokens};

use crate::Embedded;
use crate::codec::{at, micros, opt_at, to_json};

const COLUMNS: &str = "id, hash, tenant, scopes, rate, created_at, revoked_at";

fn token(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scopes: String = row.get(3)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        hash: row.get(1)?,
        tenant: row.get(2)?,
        scopes: serde_json::from_str(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        rate: row.get(4)?,
        created_at: at(row, 5)?,
        revoked_at: opt_at(row, 6)?,
    })
}

#[async_trait]
impl Tokens for Embedded {
    async fn put_token(&self, t: &TokenRecord) -> Result<(), BackendError> {
        let t = t.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?
                .execute(params![
                    t.id,
                    t.hash,
                    t.tenant,
                    to_json(&t.scopes)?,
                    t.rate,
                    micros(t.created_at),
                    t.revoked_at.map(micros)
                ])
                .map(drop)
            })
            .await
            .map_err(|e| e.into_backend("tokens.put"))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, BackendError> {
        let hash = hash.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1"))?
                    .query_row(params![hash], token)
                    .optional()
            })
            .await
            .map_err(|e| e.into_backend("tokens.get"))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, BackendError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM tokens ORDER BY created_at, id"
                ))?
                .query_map([], token)?
                .collect()
            })
            .await
            .map_err(|e| e.into_backend("tokens.list"))
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, BackendError> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    )?
                    .execute(params![id, micros(at)])?;
                Ok(changed > 0)
            })
            .await
            .map_err(|e| e.into_backend("tokens.revoke"))
    }
}
