//! Validation of client input: identifiers, headers, request bodies and JSON Schemas.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, InvalidParam};
use crate::model::{Priority, StartSpec};

/// The longest `Prefer: wait=N` honoured, in seconds.
pub const MAX_WAIT_SECS: u64 = 20;
/// The longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A JSON object given as text (a command-line flag's value).
pub fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("is not valid JSON: {e}")),
    }
}

/// Checks a workflow code or tenant: 1 to 128 characters of `A-Z a-z 0-9 _ . -`.
pub fn identifier(what: &str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            "must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', '-'",
        ))
    }
}

/// Parses an `Idempotency-Key` header value: 1 to 255 printable ASCII characters. The
/// structured-field string form (`"key"`) is accepted too and means the same key.
pub fn idempotency_key(raw: &[u8]) -> Result<String, Error> {
    let text = std::str::from_utf8(raw).map_err(|_| Error::invalid("Idempotency-Key", KEY_RULE))?;
    let key = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if text.len() >= 2 => inner,
        _ => text,
    };
    checked_key("Idempotency-Key", key)
}

const KEY_RULE: &str = "must be 1 to 255 printable ASCII characters";

/// An idempotency key (found at `what`), if it is 1 to 255 printable ASCII characters.
fn checked_key(what: &str, key: &str) -> Result<String, Error> {
    let printable = key.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if key.is_empty() || key.len() > MAX_KEY_LEN || !printable {
        return Err(Error::invalid(what, KEY_RULE));
    }
    Ok(key.to_owned())
}

/// A header that may be given at most once; given twice, which one counts would be a guess.
pub fn single_header<'a>(
    headers: &'a axum::http::HeaderMap,
    name: &str,
) -> Result<Option<&'a [u8]>, Error> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Error::invalid(name, "is given more than once"));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// Extracts `wait=N` from `Prefer` header values (RFC 7240). `None` when absent.
pub fn prefer_wait<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, Error> {
    for raw in values {
        let text =
            std::str::from_utf8(raw).map_err(|_| Error::invalid("Prefer", "not valid text"))?;
        for preference in text.split(',') {
            let token = preference.split(';').next().unwrap_or("").trim();
            let Some((name, value)) = token.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("wait") {
                continue;
            }
            let value = value.trim().trim_matches('"');
            return match value.parse::<u64>() {
                Ok(n) if n <= MAX_WAIT_SECS => Ok(Some(n)),
                _ => Err(Error::invalid(
                    "Prefer",
                    format!("wait must be a whole number of seconds from 0 to {MAX_WAIT_SECS}"),
                )),
            };
        }
    }
    Ok(None)
}

/// The body of `POST /v1/workflows/{code}/instances`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Start params; an object. Defaults to `{}` when absent; `null` is refused.
    #[serde(default, deserialize_with = "not_null")]
    pub params: Option<Value>,
    /// Defaults to `MEDIUM`. Only the string form is accepted.
    #[serde(default, deserialize_with = "priority_text")]
    pub priority: Option<Priority>,
    /// RFC 3339 timestamp.
    #[serde(default, deserialize_with = "not_null")]
    pub schedule_time: Option<String>,
}

/// An optional field that, when present, must not be `null`: absent and `null` are not the
/// same answer, and the contract documents no `null`.
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let value = Value::deserialize(d)?;
    if value.is_null() {
        return Err(serde::de::Error::custom(
            "must not be null; leave the field out instead",
        ));
    }
    T::deserialize(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl StartBody {
    /// Checks the body's own shape and builds the spec (params are checked against the
    /// workflow's schema separately).
    pub fn into_spec(self, workflow: &str) -> Result<StartSpec, Error> {
        let params = match self.params {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(Error::invalid("/params", "must be a JSON object")),
        };
        let schedule_time = match self.schedule_time {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| {
                        Error::invalid(
                            "/schedule_time",
                            format!("must be an RFC 3339 timestamp ({e})"),
                        )
                    })?
                    .with_timezone(&Utc),
            ),
        };
        Ok(StartSpec {
            workflow: workflow.to_owned(),
            params,
            priority: self.priority.unwrap_or_default(),
            schedule_time,
            logical_date: None,
            schedule_id: None,
            backfill_id: None,
            options: Default::default(),
            dry_run: false,
            policy: None,
        })
    }
}

/// The most starts one batch carries.
pub const MAX_BATCH_STARTS: usize = 500;

/// The body of `POST /v1/workflows/{code}/instances/batch`. Each start is kept as its own
/// JSON text and read on its own ([`BatchStart`]), so that one bad start refuses only itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The starts, in order.
    pub starts: Vec<Box<serde_json::value::RawValue>>,
}

impl BatchBody {
    /// The starts, if there are 1 to [`MAX_BATCH_STARTS`] of them.
    pub fn starts(self) -> Result<Vec<Box<serde_json::value::RawValue>>, Error> {
        match self.starts.len() {
            0 => Err(Error::invalid("/starts", "must hold at least one start")),
            n if n > MAX_BATCH_STARTS => Err(Error::invalid(
                "/starts",
                format!(
                    "holds {n} starts, over the limit of {MAX_BATCH_STARTS}; send them in \
                     batches of at most {MAX_BATCH_STARTS}"
                ),
            )),
            _ => Ok(self.starts),
        }
    }
}

/// One start of a batch: a start's body with its own idempotency key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchStart {
    /// The start's `Idempotency-Key`, as the single route takes it in a header.
    #[serde(default, deserialize_with = "not_null")]
    pub idempotency_key: Option<String>,
    /// As [`StartBody::params`].
    #[serde(default, deserialize_with = "not_null")]
    pub params: Option<Value>,
    /// As [`StartBody::priority`].
    #[serde(default, deserialize_with = "priority_text")]
    pub priority: Option<Priority>,
    /// As [`StartBody::schedule_time`].
    #[serde(default, deserialize_with = "not_null")]
    pub schedule_time: Option<String>,
}

impl BatchStart {
    /// Its key, checked, and its body.
    pub fn split(self) -> Result<(Option<String>, StartBody), Error> {
        let key = self
            .idempotency_key
            .map(|k| checked_key("/idempotency_key", &k))
            .transpose()?;
        let body = StartBody {
            params: self.params,
            priority: self.priority,
            schedule_time: self.schedule_time,
        };
        Ok((key, body))
    }
}

/// A priority given as one of its names, never in serde's other enum forms (`{"HIGH":
/// null}`, `["HIGH"]`).
fn priority_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Priority>, D::Error> {
    let text: Option<String> = not_null(d)?;
    text.map(|t| {
        serde_json::from_value(Value::String(t.clone())).map_err(|_| {
            serde::de::Error::custom(format!(
                "priority {t:?} is not one of HIGHEST, HIGH, MEDIUM, LOW, LOWEST"
            ))
        })
    })
    .transpose()
}

/// The first key given twice in one object of a JSON text, with where (a JSON pointer to
/// the object), which a parse into a map would silently resolve by keeping one value.
/// `None` when every object's keys are distinct (or the text is not JSON: parsing says so).
pub fn repeated_key(json: &[u8]) -> Option<(String, String)> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut found = None;
    let _ = serde::de::DeserializeSeed::deserialize(
        Distinct {
            at: String::new(),
            found: &mut found,
        },
        &mut de,
    );
    found
}

/// Walks one JSON value, stopping at the first object that repeats a key.
struct Distinct<'a> {
    /// The JSON pointer of the value walked.
    at: String,
    /// The object and key of the first repeat.
    found: &'a mut Option<(String, String)>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Distinct<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Distinct<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let child = Distinct {
                at: format!("{}/{index}", self.at),
                found: &mut *self.found,
            };
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found = Some((
                    if self.at.is_empty() {
                        "/".into()
                    } else {
                        self.at
                    },
                    key,
                ));
                return Err(serde::de::Error::custom("a key is repeated"));
            }
            let child = Distinct {
                at: format!("{}/{}", self.at, key.replace('~', "~0").replace('/', "~1")),
                found: &mut *self.found,
            };
            map.next_value_seed(child)?;
            seen.push(key);
        }
        Ok(())
    }
}

/// The first integer literal in a JSON text that a 64-bit integer cannot hold, which would
/// otherwise be read as a float and lose digits.
pub fn oversized_integer(json: &[u8]) -> Option<String> {
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < json.len() && (json[i].is_ascii_digit() || b".eE+-".contains(&json[i])) {
                i += 1;
            }
            let literal = std::str::from_utf8(&json[start..i]).unwrap_or_default();
            let integer = !literal.contains(['.', 'e', 'E']);
            if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                return Some(literal.to_owned());
            }
            continue;
        }
        i += 1;
    }
    None
}

/// The body of `PUT /v1/workflows/{code}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowBody {
    /// Human-readable name, 1 to 200 characters.
    pub name: String,
    /// Whether it accepts starts. Defaults to `true`.
    #[serde(default = "default_online")]
    pub online: bool,
    /// JSON Schema for the start params.
    pub params_schema: Value,
    /// Its numeric DolphinScheduler definition code (a positive integer, unique per tenant).
    #[serde(default, deserialize_with = "not_null")]
    pub ds_code: Option<i64>,
    /// The DolphinScheduler project code it answers under (a positive integer).
    #[serde(default, deserialize_with = "not_null")]
    pub ds_project_code: Option<i64>,
    /// Where its instances are handed off once created; absent keeps it record-only. The
    /// host's dispatcher checks it.
    #[serde(default, deserialize_with = "not_null")]
    pub target: Option<Value>,
    /// Seconds an instance may go without a final status before it is `TIMED_OUT`.
    #[serde(default, deserialize_with = "not_null")]
    pub run_timeout: Option<u64>,
    /// The most unfinished instances per key, and what a start does at the limit.
    #[serde(default, deserialize_with = "not_null")]
    pub concurrency: Option<crate::model::Concurrency>,
    /// DolphinScheduler's `executionType`, instead of `concurrency`.
    #[serde(default, deserialize_with = "not_null")]
    pub execution_type: Option<crate::model::ExecutionType>,
}

fn default_online() -> bool {
    true
}

impl WorkflowBody {
    /// Its run settings.
    pub fn run_settings(&self) -> crate::model::RunSettings {
        crate::model::RunSettings {
            run_timeout: self.run_timeout,
            concurrency: self.concurrency.clone(),
            execution_type: self.execution_type,
        }
    }

    /// Checks the name and that the schema is a valid JSON Schema.
    pub fn validate(&self) -> Result<(), Error> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid("/name", "must be 1 to 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid("/name", "must not hold control characters"));
        }
        for (pointer, code) in [
            ("/ds_code", self.ds_code),
            ("/ds_project_code", self.ds_project_code),
        ] {
            if code.is_some_and(|c| c <= 0) {
                return Err(Error::invalid(pointer, "must be a positive integer"));
            }
        }
        crate::runs::validate(&self.run_settings())?;
        crate::schemas::compile(&self.params_schema).map_err(|reason| Error::Invalid {
            detail: "params_schema is not a valid JSON Schema".into(),
            errors: vec![InvalidParam::new("/params_schema", reason)],
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(b"abc").ok().as_deref(), Some("abc"));
        assert_eq!(idempotency_key(b"\"abc\"").ok().as_deref(), Some("abc"));
        assert!(idempotency_key(b"").is_err());
        assert!(idempotency_key(b"\"\"").is_err());
        assert!(idempotency_key(&[b'a'; 256]).is_err());
        assert!(idempotency_key(&[b'a'; 255]).is_ok());
        assert!(idempotency_key(b"tab\there").is_err());
        assert!(idempotency_key("é".as_bytes()).is_err());
    }

    #[test]
    fn prefer_wait_parsing() {
        let p = |v: &'static str| prefer_wait(std::iter::once(v.as_bytes()));
        assert_eq!(p("wait=5").ok(), Some(Some(5)));
        assert_eq!(p("respond-async, wait=10").ok(), Some(Some(10)));
        assert_eq!(p("handling=lenient").ok(), Some(None));
        assert!(p("wait=21").is_err());
        assert!(p("wait=abc").is_err());
    }

    #[test]
    fn only_integers_beyond_64_bits_are_flagged() {
        assert_eq!(
            oversized_integer(br#"{"a": 18446744073709551616}"#).as_deref(),
            Some("18446744073709551616")
        );
        assert_eq!(
            oversized_integer(br#"{"a": -9223372036854775809}"#).as_deref(),
            Some("-9223372036854775809")
        );
        assert_eq!(
            oversized_integer(br#"{"a": 18446744073709551615, "b": -1}"#),
            None
        );
        assert_eq!(
            oversized_integer(br#"{"a": 1e400, "b": "123456789012345678901234"}"#),
            None
        );
        assert_eq!(
            oversized_integer(br#"{"k\"": "x\"99999999999999999999"}"#),
            None
        );
    }

    #[test]
    fn a_repeated_key_is_found_where_it_is() {
        assert_eq!(
            repeated_key(br#"{"params":{"a":1,"a":2}}"#),
            Some(("/params".into(), "a".into()))
        );
        assert_eq!(
            repeated_key(br#"{"x":[{"b":1},{"b":1,"c":{},"b":3}]}"#),
            Some(("/x/1".into(), "b".into()))
        );
        assert_eq!(
            repeated_key(br#"{"a":1,"a":1}"#),
            Some(("/".into(), "a".into()))
        );
        // Escapes are read: "\u0061" is "a".
        assert_eq!(
            repeated_key(br#"{"a":1,"\u0061":2}"#),
            Some(("/".into(), "a".into()))
        );
        assert_eq!(repeated_key(br#"{"a":{"a":1},"b":[1,"a"]}"#), None);
        assert_eq!(repeated_key(b"not json"), None);
    }

    #[test]
    fn identifiers() {
        assert!(identifier("code", "order-flow_v1.2").is_ok());
        assert!(identifier("code", "").is_err());
        assert!(identifier("code", "a b").is_err());
        assert!(identifier("code", &"a".repeat(129)).is_err());
    }
}
