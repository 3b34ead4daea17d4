//! Params schemas: compiled once per workflow version, with bounds checked and patterns on a
//! linear-time engine, and run off the async workers within a time budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::error::{BackendError, Error, InvalidParam};
use crate::model::Workflow;

/// The largest compiled `pattern` accepted, in bytes.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// Compiles a params schema: checks its bounds (`schema_limits`), then builds it with the
/// `regex` engine, which runs in linear time and refuses backreferences and lookaround.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON object or boolean".into());
    }
    crate::schema_limits::check(schema)?;
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(MAX_REGEX_BYTES))
        .build(schema)
        .map_err(|e| e.to_string())
}

/// (tenant, workflow code).
type WorkflowKey = (String, String);

/// Compiled params validators, keyed by workflow and version, so a hot workflow's schema is
/// compiled once; and the workers that run them, one per core.
pub struct SchemaCache {
    compiled: Mutex<HashMap<WorkflowKey, (u64, Arc<jsonschema::Validator>)>>,
    workers: Arc<Semaphore>,
}

impl Default for SchemaCache {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            compiled: Mutex::default(),
            workers: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl SchemaCache {
    /// Checks `params` against the workflow's schema on a blocking worker, listing every
    /// failing path. A check that runs past `budget` refuses the request.
    pub async fn check(
        &self,
        workflow: &Workflow,
        params: &Map<String, Value>,
        budget: Duration,
    ) -> Result<(), Error> {
        let validator = self.validator(workflow)?;
        let instance = Value::Object(params.clone());
        let permit = self.workers.clone().acquire_owned().await;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            validator
                .iter_errors(&instance)
                .map(|e| InvalidParam::new(format!("/params{}", e.instance_path()), e.to_string()))
                .collect::<Vec<_>>()
        });
        let errors = match tokio::time::timeout(budget, task).await {
            Ok(Ok(errors)) => errors,
            Ok(Err(panicked)) => {
                return Err(
                    BackendError::permanent("schema.validate", panicked.to_string()).into(),
                );
            }
            Err(_) => {
                return Err(Error::invalid(
                    "/params",
                    format!(
                        "took longer than the validation budget ({}) to check",
                        humantime::format_duration(budget)
                    ),
                ));
            }
        };
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
