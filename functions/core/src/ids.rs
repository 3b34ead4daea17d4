//! Identifiers and payload fingerprints.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::model::StartSpec;

/// Namespace of the name-based request ids derived from idempotency keys.
const REQUEST_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_5a52_9d0e_4c1b_8a57_3d2e_f0a4_b7c9);

/// The request id for a start request.
///
/// With an idempotency key it is derived from (tenant, key), so every retry of the same key
/// addresses the same record and a conditional put detects the reuse in one round trip.
/// Without a key it is a fresh, time-ordered UUIDv7.
pub fn request_id(tenant: &str, idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => {
            let name = format!("{tenant}\n{key}");
            Uuid::new_v5(&REQUEST_NAMESPACE, name.as_bytes()).to_string()
        }
        None => Uuid::now_v7().to_string(),
    }
}

/// Namespace of the backfill ids derived from idempotency keys.
const BACKFILL_NAMESPACE: Uuid = Uuid::from_u128(0x0b5e_7c1a_44d2_4e8f_9a61_c2d7_5e3f_1a08);

/// The id of a backfill: derived from (tenant, key) when the call carries an idempotency
/// key, so that its retry finds the same backfill; else a fresh, time-ordered UUIDv7.
pub fn backfill_id(tenant: &str, idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => {
            let name = format!("{tenant}\n{key}");
            Uuid::new_v5(&BACKFILL_NAMESPACE, name.as_bytes()).to_string()
        }
        None => Uuid::now_v7().to_string(),
    }
}

/// When a time-ordered id (UUIDv7, as [`instance_id`] mints) was minted, to the millisecond;
/// `None` for any other id.
pub fn minted_at(id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (secs, nanos) = Uuid::parse_str(id).ok()?.get_timestamp()?.to_unix();
    chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// A fresh, time-ordered instance id.
pub fn instance_id() -> String {
    Uuid::now_v7().to_string()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The hex digits of a fingerprint a store may keep instead of all 64: its first 128 bits.
pub const SHORT_FINGERPRINT: usize = 32;

/// Whether a stored fingerprint is `computed`'s: the same, or (a store keeping only
/// [`SHORT_FINGERPRINT`] digits) its first 128 bits. Two different payloads under one key
/// share them only by a SHA-256 collision on 128 bits.
pub fn same_payload(stored: &str, computed: &str) -> bool {
    stored == computed || (stored.len() == SHORT_FINGERPRINT && computed.starts_with(stored))
}

/// A digest of what a start request asks for, independent of JSON key order and whitespace.
pub fn fingerprint(spec: &StartSpec) -> String {
    // A spec is plain data: it always serializes.
    let mut value = serde_json::to_value(spec).unwrap_or_else(|e| unreachable!("a spec: {e}"));
    // The run policy is the workflow's, not the caller's: a retry after the workflow changed
    // it asks for the same start.
    if let Some(map) = value.as_object_mut() {
        map.remove("policy");
    }
    let mut canonical = String::with_capacity(128);
    write_canonical(&value, &mut canonical);
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// A JSON string literal of `text`, as serde_json writes it.
fn write_string(text: &str, out: &mut String) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&Value::String(text.to_owned()).to_string());
    }
}

/// Serializes `value` with object keys sorted, recursively.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_string(text, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Priority;
    use serde_json::json;

    fn spec(params: Value) -> StartSpec {
        StartSpec {
            workflow: "wf".into(),
            params: params.as_object().cloned().unwrap_or_default(),
            priority: Priority::Medium,
            schedule_time: None,
            logical_date: None,
            schedule_id: None,
            backfill_id: None,
            options: Default::default(),
            dry_run: false,
            policy: None,
        }
    }

    /// The digest of a fixed spec, as every build since the first wrote it: stored
    /// fingerprints must keep matching.
    #[test]
    fn a_fingerprint_is_what_it_always_was() {
        let mut s = spec(json!({"b": "x\"y", "a": [1, 2.5, null, true], "c\u{0001}": {}}));
        s.options.insert("k".into(), "v".into());
        let canonical_then = {
            let value = serde_json::to_value(&s).expect("a spec");
            fn old(value: &Value, out: &mut String) {
                match value {
                    Value::Object(map) => {
                        let mut keys: Vec<&String> = map.keys().collect();
                        keys.sort();
                        out.push('{');
                        for (i, key) in keys.into_iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            out.push_str(&Value::String(key.clone()).to_string());
                            out.push(':');
                            old(&map[key], out);
                        }
                        out.push('}');
                    }
                    Value::Array(items) => {
                        out.push('[');
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            old(item, out);
                        }
                        out.push(']');
                    }
                    scalar => out.push_str(&scalar.to_string()),
                }
            }
            let mut out = String::new();
            old(&value, &mut out);
            Sha256::digest(out.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(fingerprint(&s), canonical_then);
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let a = fingerprint(&spec(json!({"a": 1, "b": {"x": [1, 2], "y": null}})));
        let b = fingerprint(&spec(json!({"b": {"y": null, "x": [1, 2]}, "a": 1})));
        let c = fingerprint(&spec(json!({"a": 2, "b": {"x": [1, 2], "y": null}})));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn keyed_request_ids_are_stable_and_tenant_scoped() {
        assert_eq!(request_id("t1", Some("k")), request_id("t1", Some("k")));
        assert_ne!(request_id("t1", Some("k")), request_id("t2", Some("k")));
        assert_ne!(request_id("t1", None), request_id("t1", None));
    }

    #[test]
    fn an_instance_id_tells_when_it_was_minted() {
        let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        let minted = minted_at(&instance_id()).expect("a v7 id");
        assert!(minted >= before && minted <= chrono::Utc::now(), "{minted}");
        assert_eq!(
            minted_at(&request_id("t", Some("k"))),
            None,
            "a v5 id has no time"
        );
        assert_eq!(minted_at("not-a-uuid"), None);
    }
}
