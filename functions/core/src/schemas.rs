//! Params schemas: compiled once per workflow version, with bounds checked and patterns on a
//! linear-time engine, and run off the async workers within a time budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{BackendError, Error, InvalidParam};
use crate::model::Workflow;
use crate::pool::{BlockingPool, PoolError};

/// The largest compiled `pattern` accepted, in bytes.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// A schema small enough, with params small enough, is checked on the request's own task:
/// at most this many schema nodes (with `$ref`s expanded), and no `pattern`,
/// `patternProperties` or `format` (whose engines cost more than a node visit)...
const INLINE_SCHEMA_NODES: usize = 64;
/// ...and params of at most this many JSON values. Such a check visits at most a few
/// thousand nodes (microseconds), so it needs neither a blocking worker nor a budget.
const INLINE_PARAMS_VALUES: usize = 64;
/// Keywords whose check runs a regex or a format parser.
const COSTLY_KEYWORDS: &[&str] = &["pattern", "patternProperties", "format"];

/// A compiled params schema, and whether it is cheap enough to check inline.
pub struct Compiled {
    validator: jsonschema::Validator,
    small: bool,
}

/// Compiles a params schema: checks its bounds (`schema_limits`), then builds it with the
/// `regex` engine, which runs in linear time and refuses backreferences and lookaround.
pub fn compile(schema: &Value) -> Result<Compiled, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON object or boolean".into());
    }
    let nodes = crate::schema_limits::check(schema)?;
    let validator = jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(MAX_REGEX_BYTES))
        .build(schema)
        .map_err(|e| e.to_string())?;
    Ok(Compiled {
        validator,
        small: nodes <= INLINE_SCHEMA_NODES && !has_costly_keyword(schema),
    })
}

fn has_costly_keyword(node: &Value) -> bool {
    match node {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| COSTLY_KEYWORDS.contains(&k.as_str()) || has_costly_keyword(v)),
        Value::Array(items) => items.iter().any(has_costly_keyword),
        _ => false,
    }
}

/// Whether `value` holds at most `limit` JSON values, counted until the limit is passed.
fn at_most_values(value: &Value, limit: &mut usize) -> bool {
    if *limit == 0 {
        return false;
    }
    *limit -= 1;
    match value {
        Value::Object(map) => map.values().all(|v| at_most_values(v, limit)),
        Value::Array(items) => items.iter().all(|v| at_most_values(v, limit)),
        _ => true,
    }
}

/// Every failing path of `params`, as `/params/...`.
fn failures(validator: &jsonschema::Validator, instance: &Value) -> Vec<InvalidParam> {
    validator
        .iter_errors(instance)
        .map(|e| InvalidParam::new(format!("/params{}", e.instance_path()), e.to_string()))
        .collect()
}

/// (tenant, workflow code).
type WorkflowKey = (String, String);

/// Compiled params validators, keyed by workflow and version, so a hot workflow's schema is
/// compiled once; and the workers that run them, one per core.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<WorkflowKey, (u64, Arc<Compiled>)>>,
    pool: BlockingPool,
}

impl SchemaCache {
    /// A cache whose costly checks run on `pool`.
    pub fn new(pool: BlockingPool) -> Self {
        Self {
            compiled: Mutex::default(),
            pool,
        }
    }
}

impl SchemaCache {
    /// Checks `params` against the workflow's schema, listing every failing path: inline
    /// when both are small (see `INLINE_SCHEMA_NODES`), else on a blocking worker, where a
    /// check that runs past `budget` refuses the request.
    pub async fn check(
        &self,
        workflow: &Workflow,
        params: &Map<String, Value>,
        budget: Duration,
    ) -> Result<(), Error> {
        let compiled = self.validator(workflow)?;
        let instance = Value::Object(params.clone());
        let errors = if compiled.small && at_most_values(&instance, &mut { INLINE_PARAMS_VALUES }) {
            failures(&compiled.validator, &instance)
        } else {
            self.check_on_worker(compiled, instance, budget).await?
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::ParamsInvalid { errors })
        }
    }

    /// Runs a check on a blocking worker, within `budget`.
    async fn check_on_worker(
        &self,
        compiled: Arc<Compiled>,
        instance: Value,
        budget: Duration,
    ) -> Result<Vec<InvalidParam>, Error> {
        let checked = self
            .pool
            .run(budget, move || failures(&compiled.validator, &instance))
            .await;
        match checked {
            Ok(errors) => Ok(errors),
            Err(PoolError::Panicked(why)) => {
                Err(BackendError::permanent("schema.validate", why).into())
            }
            Err(PoolError::OverBudget(_)) => Err(Error::invalid(
                "/params",
                format!(
                    "took longer than the validation budget ({}) to check",
                    humantime::format_duration(budget)
                ),
            )),
        }
    }

    fn validator(&self, workflow: &Workflow) -> Result<Arc<Compiled>, Error> {
        let key = (workflow.tenant.clone(), workflow.code.clone());
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((version, validator)) = compiled.get(&key)
            && *version == workflow.version
        {
            return Ok(validator.clone());
        }
        // A schema stored before its bounds were checked, or by an older build, may be
        // refused now: the workflow must be registered again.
        let validator = Arc::new(compile(&workflow.params_schema).map_err(|reason| {
            BackendError::permanent(
                "schema.compile",
                format!(
                    "the stored schema of workflow {} is refused ({reason}); register it again",
                    workflow.code
                ),
            )
        })?);
        compiled.insert(key, (workflow.version, validator.clone()));
        Ok(validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_small_schemas_without_regex_or_format_are_checked_inline() {
        let small = json!({"type": "object", "required": ["n"],
            "properties": {"n": {"type": "integer"}}});
        assert!(compile(&small).expect("compiles").small);
        let patterned = json!({"type": "object",
            "properties": {"s": {"type": "string", "pattern": "^a+$"}}});
        assert!(!compile(&patterned).expect("compiles").small);
        let formatted = json!({"properties": {"d": {"format": "date-time"}}});
        assert!(!compile(&formatted).expect("compiles").small);
        let many: serde_json::Map<String, Value> = (0..40)
            .map(|i| (format!("p{i}"), json!({"type": "integer"})))
            .collect();
        let large = json!({"type": "object", "properties": many});
        assert!(!compile(&large).expect("compiles").small, "81 nodes");
    }

    #[test]
    fn params_are_counted_only_up_to_the_limit() {
        assert!(at_most_values(&json!({"a": 1, "b": [1, 2]}), &mut 5));
        assert!(!at_most_values(&json!({"a": 1, "b": [1, 2]}), &mut 4));
        let wide = Value::Array(vec![json!(1); 100_000]);
        assert!(!at_most_values(&wide, &mut { INLINE_PARAMS_VALUES }));
    }

    #[tokio::test]
    async fn an_inline_check_lists_every_failing_path_as_the_worker_does() {
        let cache = SchemaCache::default();
        let workflow: Workflow = serde_json::from_value(json!({
            "tenant": "t", "code": "w", "name": "w", "online": true, "version": 1,
            "params_schema": {"type": "object", "required": ["n"],
                "properties": {"n": {"type": "integer"}, "m": {"type": "string"}}},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .expect("a workflow");
        let bad = json!({"n": "x", "m": 1});
        let Value::Object(params) = bad.clone() else {
            unreachable!()
        };
        let inline = cache
            .check(&workflow, &params, Duration::from_secs(1))
            .await;
        let Err(Error::ParamsInvalid { errors }) = inline else {
            panic!("refused: {inline:?}")
        };
        let compiled = cache.validator(&workflow).expect("compiled");
        assert!(compiled.small);
        let on_worker = cache
            .check_on_worker(compiled, bad, Duration::from_secs(1))
            .await
            .expect("checked");
        assert_eq!(errors.len(), 2);
        assert_eq!(format!("{errors:?}"), format!("{on_worker:?}"));
    }
}
