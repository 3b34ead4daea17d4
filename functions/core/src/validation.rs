//! Validation of client input: identifiers, headers, request bodies and JSON Schemas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, InvalidParam};
use crate::model::{Priority, StartSpec, Workflow};

/// The longest `Prefer: wait=N` honoured, in seconds.
pub const MAX_WAIT_SECS: u64 = 20;
/// The longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 255;

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
    let reason = "must be 1 to 255 printable ASCII characters";
    let text = std::str::from_utf8(raw).map_err(|_| Error::invalid("Idempotency-Key", reason))?;
    let key = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if text.len() >= 2 => inner,
        _ => text,
    };
    let printable = key.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if key.is_empty() || key.len() > MAX_KEY_LEN || !printable {
        return Err(Error::invalid("Idempotency-Key", reason));
    }
    Ok(key.to_owned())
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
    /// Start params; an object. Defaults to `{}`.
    #[serde(default)]
    pub params: Option<Value>,
    /// Defaults to `MEDIUM`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// RFC 3339 timestamp.
    #[serde(default)]
    pub schedule_time: Option<String>,
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
        })
    }
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
}

fn default_online() -> bool {
    true
}

impl WorkflowBody {
    /// Checks the name and that the schema is a valid JSON Schema.
    pub fn validate(&self) -> Result<(), Error> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid("/name", "must be 1 to 200 characters"));
        }
        compile(&self.params_schema).map_err(|reason| Error::Invalid {
            detail: "params_schema is not a valid JSON Schema".into(),
            errors: vec![InvalidParam::new("/params_schema", reason)],
        })?;
        Ok(())
    }
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON object or boolean".into());
    }
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// (tenant, workflow code).
type WorkflowKey = (String, String);

/// Compiled params validators, keyed by workflow and version, so a hot workflow's schema is
/// compiled once rather than on every start request.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<WorkflowKey, (u64, Arc<jsonschema::Validator>)>>,
}

impl SchemaCache {
    /// Checks `params` against the workflow's schema, listing every failing path.
    pub fn check(&self, workflow: &Workflow, params: &Map<String, Value>) -> Result<(), Error> {
        let validator = self.validator(workflow)?;
        let instance = Value::Object(params.clone());
        let errors: Vec<InvalidParam> = validator
            .iter_errors(&instance)
            .map(|e| InvalidParam::new(format!("/params{}", e.instance_path()), e.to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::ParamsInvalid { errors })
        }
    }

    fn validator(&self, workflow: &Workflow) -> Result<Arc<jsonschema::Validator>, Error> {
        let key = (workflow.tenant.clone(), workflow.code.clone());
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((version, validator)) = compiled.get(&key)
            && *version == workflow.version
        {
            return Ok(validator.clone());
        }
        // A stored schema was valid when registered; failing now means the library changed.
        let validator = Arc::new(compile(&workflow.params_schema).map_err(|reason| {
            Error::Backend(crate::error::BackendError::permanent(
                "schema.compile",
                format!(
                    "stored schema of workflow {} no longer compiles: {reason}",
                    workflow.code
                ),
            ))
        })?);
        compiled.insert(key, (workflow.version, validator.clone()));
        Ok(validator)
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
    fn identifiers() {
        assert!(identifier("code", "order-flow_v1.2").is_ok());
        assert!(identifier("code", "").is_err());
        assert!(identifier("code", "a b").is_err());
        assert!(identifier("code", &"a".repeat(129)).is_err());
    }
}
