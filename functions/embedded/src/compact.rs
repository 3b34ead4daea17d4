//! The compact storage forms of a start's columns, so that a start costs few bytes and few
//! pages: ids as their 16 bytes, the fingerprint as its 32, the spec without what the row's
//! own columns hold (and without its defaults), and the history as arrays with integer
//! times and the usual details by reference. Each form reads back exactly what was written;
//! the full JSON forms of rows written before them still read.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::{Type, Value};
use serde::{Deserialize, Serialize};
use serde_json::Map;

use flowgate_core::model::{EventKind, HistoryEvent, Priority, StartSpec, details};

fn bad(col: usize, what: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Blob, what.into().into())
}

/// An id as stored: a canonical UUID (as every id Flowgate mints) as its 16 bytes, any
/// other text as it is.
pub fn id(text: &str) -> Value {
    match uuid::Uuid::parse_str(text) {
        Ok(u) if u.hyphenated().to_string() == text => Value::Blob(u.as_bytes().to_vec()),
        _ => Value::Text(text.to_owned()),
    }
}

/// An id column, read back.
pub fn id_at(row: &Row<'_>, col: usize) -> rusqlite::Result<String> {
    match row.get::<_, Value>(col)? {
        Value::Text(text) => Ok(text),
        Value::Blob(bytes) => uuid::Uuid::from_slice(&bytes)
            .map(|u| u.hyphenated().to_string())
            .map_err(|e| bad(col, format!("an id of {} bytes: {e}", bytes.len()))),
        other => Err(bad(col, format!("an id that is {other:?}"))),
    }
}

/// A fingerprint (64 hex digits) as its 32 bytes; anything else as text.
pub fn digest(hex: &str) -> Value {
    let bytes: Option<Vec<u8>> = (hex.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten()
        .filter(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>() == hex);
    match bytes {
        Some(b) => Value::Blob(b),
        None => Value::Text(hex.to_owned()),
    }
}

/// A fingerprint column, read back.
pub fn digest_at(row: &Row<'_>, col: usize) -> rusqlite::Result<String> {
    match row.get::<_, Value>(col)? {
        Value::Text(text) => Ok(text),
        Value::Blob(bytes) => Ok(flowgate_core::ids::hex(&bytes)),
        other => Err(bad(col, format!("a fingerprint that is {other:?}"))),
    }
}

fn is_medium(p: &Priority) -> bool {
    *p == Priority::Medium
}

/// A spec as stored: the workflow is the row's own column; defaults are left out.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSpec {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    p: Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "is_medium")]
    r: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    o: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    d: bool,
}

/// A spec's stored text.
pub fn spec(spec: &StartSpec) -> rusqlite::Result<String> {
    let stored = StoredSpec {
        p: spec.params.clone(),
        r: spec.priority,
        s: spec.schedule_time,
        l: spec.logical_date,
        c: spec.schedule_id.clone(),
        b: spec.backfill_id.clone(),
        o: spec.options.clone(),
        d: spec.dry_run,
    };
    crate::codec::to_json(&stored)
}

/// A spec column (`col`) and the workflow column, read back; the full JSON form of rows
/// written before the compact one reads too.
pub fn spec_at(row: &Row<'_>, col: usize, workflow: String) -> rusqlite::Result<StartSpec> {
    let text: String = row.get(col)?;
    if let Ok(s) = serde_json::from_str::<StoredSpec>(&text) {
        return Ok(StartSpec {
            workflow,
            params: s.p,
            priority: s.r,
            schedule_time: s.s,
            logical_date: s.l,
            schedule_id: s.c,
            backfill_id: s.b,
            options: s.o,
            dry_run: s.d,
        });
    }
    serde_json::from_str::<StartSpec>(&text).map_err(|e| bad(col, e.to_string()))
}

/// An event as stored: `[time, kind, detail, trace?]`. The first event's time is in
/// nanoseconds since the epoch, each later one's the nanoseconds since the one before; the
/// kind is its place in [`EventKind::ALL`]; a usual detail is its place in
/// [`details::USUAL`], any other its text.
#[derive(Serialize, Deserialize)]
struct StoredEvent(
    i64,
    usize,
    StoredDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")] Option<String>,
);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredDetail {
    Usual(usize),
    Text(String),
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A history's stored text.
pub fn history(events: &[HistoryEvent]) -> rusqlite::Result<String> {
    let mut previous: Option<i64> = None;
    let stored: Vec<StoredEvent> = events
        .iter()
        .map(|e| {
            let at = nanos(e.at);
            let time = previous.map_or(at, |p| at - p);
            previous = Some(at);
            let kind = EventKind::ALL
                .iter()
                .position(|k| *k == e.kind)
                .unwrap_or_else(|| unreachable!("ALL lists every kind"));
            let detail = match details::USUAL.iter().position(|d| *d == e.detail) {
                Some(i) => StoredDetail::Usual(i),
                None => StoredDetail::Text(e.detail.clone()),
            };
            StoredEvent(time, kind, detail, e.trace_id.clone())
        })
        .collect();
    crate::codec::to_json(&stored)
}

/// A history column, read back; the full JSON form of rows written before the compact one
/// reads too.
pub fn history_at(row: &Row<'_>, col: usize) -> rusqlite::Result<Vec<HistoryEvent>> {
    let text: String = row.get(col)?;
    if text.starts_with("[{") {
        return serde_json::from_str(&text).map_err(|e| bad(col, e.to_string()));
    }
    let stored: Vec<StoredEvent> =
        serde_json::from_str(&text).map_err(|e| bad(col, e.to_string()))?;
    let mut previous: Option<i64> = None;
    stored
        .into_iter()
        .map(|StoredEvent(time, kind, detail, trace_id)| {
            let at = previous.map_or(time, |p| p + time);
            previous = Some(at);
            let kind = *EventKind::ALL
                .get(kind)
                .ok_or_else(|| bad(col, format!("event kind {kind} is not one")))?;
            let detail = match detail {
                StoredDetail::Text(text) => text,
                StoredDetail::Usual(i) => (*details::USUAL
                    .get(i)
                    .ok_or_else(|| bad(col, format!("usual detail {i} is not one")))?)
                .to_owned(),
            };
            Ok(HistoryEvent {
                at: DateTime::from_timestamp_nanos(at),
                kind,
                detail,
                trace_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_digests_keep_their_text() {
        let canonical = "01a23766-cc11-772e-9b8e-6b407a98f868";
        assert!(matches!(id(canonical), Value::Blob(ref b) if b.len() == 16));
        for other in ["req-1", "01A23766-CC11-772E-9B8E-6B407A98F868", ""] {
            assert!(matches!(id(other), Value::Text(_)), "{other}");
        }
        let hex = "4085cdebab0ae533d2526d2b80f23ee7c3362f7f297bd11e5cb84616883edcd8";
        assert!(matches!(digest(hex), Value::Blob(ref b) if b.len() == 32));
        assert!(matches!(digest(&hex.to_uppercase()), Value::Text(_)));
        let conn = rusqlite::Connection::open_in_memory().expect("a database");
        let (a, b): (String, String) = conn
            .query_row(
                "SELECT ?1, ?2",
                rusqlite::params![id(canonical), digest(hex)],
                |row| Ok((id_at(row, 0)?, digest_at(row, 1)?)),
            )
            .expect("read back");
        assert_eq!((a.as_str(), b.as_str()), (canonical, hex));
    }

    #[test]
    fn a_history_reads_back_as_written_and_is_short() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-02T15:36:53.521631530Z")
            .expect("a time")
            .with_timezone(&Utc);
        let events = vec![
            HistoryEvent {
                at: t0,
                kind: EventKind::Accepted,
                detail: details::ACCEPTED_KEYED.into(),
                trace_id: Some("2004ec252bc7ed4feb92d0e37c902705".into()),
            },
            HistoryEvent {
                at: t0 + chrono::Duration::nanoseconds(27_952),
                kind: EventKind::Enqueued,
                detail: details::ENQUEUED.into(),
                trace_id: None,
            },
            HistoryEvent {
                at: t0 + chrono::Duration::microseconds(859),
                kind: EventKind::Created,
                detail: details::CREATED_FIRST.into(),
                trace_id: None,
            },
            HistoryEvent {
                at: t0 + chrono::Duration::seconds(3),
                kind: EventKind::DispatchFailed,
                detail: "HTTP 503: \"busy\"".into(),
                trace_id: None,
            },
        ];
        let text = history(&events).expect("writes");
        assert!(text.len() < 130, "{} bytes: {text}", text.len());
        let usual = history(&events[..3]).expect("writes");
        assert!(usual.len() < 100, "{} bytes: {usual}", usual.len());
        let conn = rusqlite::Connection::open_in_memory().expect("a database");
        let read = conn
            .query_row("SELECT ?1", [&text], |row| history_at(row, 0))
            .expect("reads");
        assert_eq!(read, events);
        // The full form of older rows reads too.
        let full = serde_json::to_string(&events).expect("json");
        let read = conn
            .query_row("SELECT ?1", [&full], |row| history_at(row, 0))
            .expect("reads");
        assert_eq!(read, events);
    }
}
