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

/// A value as JSON text for a column.
pub fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn bad(col: usize, what: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Blob, what.into().into())
}

/// An id as stored: a canonical UUID (as every id Flowgate mints) as its 16 bytes, any
/// other text as it is.
pub fn id(text: &str) -> Value {
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    match uuid::Uuid::parse_str(text) {
        Ok(u) if u.hyphenated().encode_lower(&mut canonical) == text => {
            Value::Blob(u.as_bytes().to_vec())
        }
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

/// A fingerprint (64 hex digits) as its first 16 bytes, which is what a replay compares
/// ([`flowgate_core::ids::same_payload`]); anything else as text.
pub fn digest(hex: &str) -> Value {
    let bytes: Option<Vec<u8>> = (hex.len() == 64)
        .then(|| {
            (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten()
        .filter(|b| hex.starts_with(&flowgate_core::ids::hex(b)));
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<flowgate_core::runs::RunPolicy>,
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
        q: spec.policy.clone(),
    };
    to_json(&stored)
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
            policy: s.q,
        });
    }
    serde_json::from_str::<StartSpec>(&text).map_err(|e| bad(col, e.to_string()))
}

/// An event as stored: `[time, kind, detail, trace?]`. The first event's time is in
/// nanoseconds since the request was accepted (rows of the first compact form: since the
/// epoch), each later one's the nanoseconds since the one before; the kind is its place in
/// [`EventKind::ALL`]; a usual detail is its place in [`details::USUAL`], any other its
/// text; a trace id is its 16 bytes in unpadded URL-safe base64 (first form: hex).
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

/// The stored form's version tag: a history of this form is `[2,[event...]]`.
const FORM: i64 = 2;
const FORM_PREFIX: &str = "[2,[";

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A trace id as stored: 32 hex digits as 22 characters of base64; anything else as it is.
fn short_trace(trace: &str) -> String {
    use base64::Engine;
    let bytes: Option<Vec<u8>> = (trace.len() == 32)
        .then(|| {
            (0..16)
                .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten()
        .filter(|b: &Vec<u8>| flowgate_core::ids::hex(b) == trace);
    match bytes {
        Some(b) => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        None => trace.to_owned(),
    }
}

/// A stored trace id, read back.
fn full_trace(stored: String) -> String {
    use base64::Engine;
    if stored.len() != 22 {
        return stored;
    }
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&stored) {
        Ok(bytes) if bytes.len() == 16 => flowgate_core::ids::hex(&bytes),
        _ => stored,
    }
}

/// The usual path's history, the one nearly every start ends with: accepted (at its
/// acceptance, with or without a key, its trace on it), sent, created on the first
/// delivery. Stored as `[3,keyed,sent,created]` or `[3,keyed,sent,created,"trace"]`: the
/// kinds and details are implied, each time is the nanoseconds since the one before.
const USUAL_FORM_PREFIX: &str = "[3,";

fn usual_history(events: &[HistoryEvent], accepted_at: DateTime<Utc>) -> Option<String> {
    let [accepted, sent, created] = events else {
        return None;
    };
    let keyed = match accepted.detail.as_str() {
        details::ACCEPTED => 0,
        details::ACCEPTED_KEYED => 1,
        _ => return None,
    };
    let usual = accepted.kind == EventKind::Accepted
        && accepted.at == accepted_at
        && sent.kind == EventKind::Enqueued
        && sent.detail == details::ENQUEUED
        && sent.trace_id.is_none()
        && created.kind == EventKind::Created
        && created.detail == details::CREATED_FIRST
        && created.trace_id.is_none();
    if !usual {
        return None;
    }
    let (t0, t1, t2) = (nanos(accepted.at), nanos(sent.at), nanos(created.at));
    Some(match &accepted.trace_id {
        None => format!("[3,{keyed},{},{}]", t1 - t0, t2 - t1),
        Some(trace) => format!(
            "[3,{keyed},{},{},\"{}\"]",
            t1 - t0,
            t2 - t1,
            short_trace(trace)
        ),
    })
}

/// The usual path's history (see [`usual_history`]), read back.
fn usual_history_at(
    col: usize,
    text: &str,
    accepted_at: DateTime<Utc>,
) -> rusqlite::Result<Vec<HistoryEvent>> {
    let parts: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| bad(col, e.to_string()))?;
    let number = |i: usize| {
        parts
            .get(i)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| bad(col, format!("a usual history without its part {i}: {text}")))
    };
    let accepted = match number(1)? {
        0 => details::ACCEPTED,
        1 => details::ACCEPTED_KEYED,
        other => return Err(bad(col, format!("{other} is not a usual acceptance"))),
    };
    let trace_id = match parts.get(4) {
        None => None,
        Some(serde_json::Value::String(t)) => Some(full_trace(t.clone())),
        Some(other) => return Err(bad(col, format!("a trace {other} is not text"))),
    };
    if parts.len() > 5 {
        return Err(bad(
            col,
            format!("a usual history of {} parts", parts.len()),
        ));
    }
    let t0 = nanos(accepted_at);
    let t1 = t0 + number(2)?;
    let t2 = t1 + number(3)?;
    let event = |at: i64, kind, detail: &str, trace_id| HistoryEvent {
        at: DateTime::from_timestamp_nanos(at),
        kind,
        detail: detail.to_owned(),
        trace_id,
    };
    Ok(vec![
        event(t0, EventKind::Accepted, accepted, trace_id),
        event(t1, EventKind::Enqueued, details::ENQUEUED, None),
        event(t2, EventKind::Created, details::CREATED_FIRST, None),
    ])
}

/// A history's stored text; `accepted_at` is its request's.
pub fn history(events: &[HistoryEvent], accepted_at: DateTime<Utc>) -> rusqlite::Result<String> {
    if let Some(usual) = usual_history(events, accepted_at) {
        return Ok(usual);
    }
    let mut previous = nanos(accepted_at);
    let mut out = String::with_capacity(16 + 24 * events.len());
    out.push_str(FORM_PREFIX);
    for (i, e) in events.iter().enumerate() {
        let at = nanos(e.at);
        let time = at - previous;
        previous = at;
        let kind = EventKind::ALL
            .iter()
            .position(|k| *k == e.kind)
            .unwrap_or_else(|| unreachable!("ALL lists every kind"));
        let detail = match details::USUAL.iter().position(|d| *d == e.detail) {
            Some(i) => StoredDetail::Usual(i),
            None => StoredDetail::Text(e.detail.clone()),
        };
        let stored = StoredEvent(time, kind, detail, e.trace_id.as_deref().map(short_trace));
        if i > 0 {
            out.push(',');
        }
        out.push_str(&to_json(&stored)?);
    }
    out.push_str("]]");
    Ok(out)
}

/// A history column, read back (`accepted_at`: its request's); the first compact form and
/// the full JSON form of older rows read too.
pub fn history_at(
    row: &Row<'_>,
    col: usize,
    accepted_at: DateTime<Utc>,
) -> rusqlite::Result<Vec<HistoryEvent>> {
    let text: String = row.get(col)?;
    if text.starts_with("[{") {
        return serde_json::from_str(&text).map_err(|e| bad(col, e.to_string()));
    }
    if text.starts_with(USUAL_FORM_PREFIX) {
        return usual_history_at(col, &text, accepted_at);
    }
    let (base, stored) = if text.starts_with(FORM_PREFIX) {
        let (form, stored): (i64, Vec<StoredEvent>) =
            serde_json::from_str(&text).map_err(|e| bad(col, e.to_string()))?;
        if form != FORM {
            return Err(bad(
                col,
                format!("a history of form {form}, not one this build reads"),
            ));
        }
        (Some(nanos(accepted_at)), stored)
    } else {
        let stored: Vec<StoredEvent> =
            serde_json::from_str(&text).map_err(|e| bad(col, e.to_string()))?;
        (None, stored)
    };
    let mut previous = base;
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
                trace_id: trace_id.map(full_trace),
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
        assert!(matches!(digest(hex), Value::Blob(ref b) if b.len() == 16));
        assert!(matches!(digest(&hex.to_uppercase()), Value::Text(_)));
        let conn = rusqlite::Connection::open_in_memory().expect("a database");
        let (a, b): (String, String) = conn
            .query_row(
                "SELECT ?1, ?2",
                rusqlite::params![id(canonical), digest(hex)],
                |row| Ok((id_at(row, 0)?, digest_at(row, 1)?)),
            )
            .expect("read back");
        assert_eq!((a.as_str(), b.as_str()), (canonical, &hex[..32]));
        assert!(flowgate_core::ids::same_payload(&b, hex));
        let other = "4085cdebab0ae533d2526d2b80f23ee8c3362f7f297bd11e5cb84616883edcd8";
        assert!(!flowgate_core::ids::same_payload(&b, other));
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
        let text = history(&events, t0).expect("writes");
        assert!(text.len() < 100, "{} bytes: {text}", text.len());
        let usual = history(&events[..3], t0).expect("writes");
        assert!(usual.starts_with("[3,1,"), "{usual}");
        assert!(usual.len() <= 45, "{} bytes: {usual}", usual.len());
        let conn = rusqlite::Connection::open_in_memory().expect("a database");
        let read = conn
            .query_row("SELECT ?1", [&text], |row| history_at(row, 0, t0))
            .expect("reads");
        assert_eq!(read, events);
        let read = conn
            .query_row("SELECT ?1", [&usual], |row| history_at(row, 0, t0))
            .expect("reads");
        assert_eq!(read, events[..3]);
        // Without a trace, and without a key, the usual form holds too; a usual history
        // whose first event is not at its acceptance keeps the general form.
        let mut plain = events[..3].to_vec();
        plain[0].trace_id = None;
        plain[0].detail = details::ACCEPTED.into();
        let stored = history(&plain, t0).expect("writes");
        assert!(stored.starts_with("[3,0,"), "{stored}");
        let read = conn
            .query_row("SELECT ?1", [&stored], |row| history_at(row, 0, t0))
            .expect("reads");
        assert_eq!(read, plain);
        let late = history(&plain, t0 - chrono::Duration::seconds(1)).expect("writes");
        assert!(late.starts_with("[2,"), "{late}");
        for bad in ["[3,2,1,1]", "[3,1,1]", "[3,1,1,1,5]", "[3,1,1,1,\"t\",0]"] {
            assert!(
                conn.query_row("SELECT ?1", [bad], |row| history_at(row, 0, t0))
                    .is_err(),
                "{bad}"
            );
        }
        // The first compact form (absolute first time, hex trace) and the full form of older
        // rows read too.
        let first = r#"[[1796225813521631530,0,1,"2004ec252bc7ed4feb92d0e37c902705"],[27952,1,2]]"#;
        let read = conn
            .query_row("SELECT ?1", [first], |row| history_at(row, 0, t0))
            .expect("reads");
        assert_eq!(read, events[..2]);
        let full = serde_json::to_string(&events).expect("json");
        let read = conn
            .query_row("SELECT ?1", [&full], |row| history_at(row, 0, t0))
            .expect("reads");
        assert_eq!(read, events);
        // A form this build does not know is an error, never a guess.
        let later = text.replacen("[2,", "[4,", 1);
        assert!(
            conn.query_row("SELECT ?1", [&later], |row| history_at(row, 0, t0))
                .is_err()
        );
    }
}
