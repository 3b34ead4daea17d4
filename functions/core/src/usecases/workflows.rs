//! Registering and reading workflow definitions.

use chrono::Utc;
use serde_json::Value;
use tracing::{info, instrument};

use super::Flowgate;
use crate::error::Error;
use crate::model::Workflow;
use crate::ports::Upsert;
use crate::validation::{WorkflowBody, identifier};

impl Flowgate {
    /// Registers or replaces a workflow definition.
    #[instrument(skip(self, body), fields(tenant = %tenant, workflow = %code))]
    pub async fn put_workflow(
        &self,
        tenant: &str,
        code: &str,
        body: WorkflowBody,
    ) -> Result<(Upsert, Workflow), Error> {
        identifier("code", code)?;
        // Compiling a schema is CPU work: off the async workers.
        let body = tokio::task::spawn_blocking(move || body.validate().map(|()| body))
            .await
            .map_err(|e| crate::BackendError::permanent("schema.compile", e.to_string()))??;
        let target = self.check_target(body.target.as_ref())?;
        let now = Utc::now();
        let runs = body.run_settings();
        let mut workflow = Workflow {
            tenant: tenant.to_owned(),
            code: code.to_owned(),
            name: body.name.trim().to_owned(),
            online: body.online,
            params_schema: body.params_schema,
            version: 0,
            ds_code: body.ds_code,
            ds_project_code: body.ds_project_code,
            target,
            runs,
            created_at: now,
            updated_at: now,
        };
        self.check_ds_code_free(&workflow).await?;
        let upsert = self.store.put_workflow(&workflow).await?;
        // Read back so the response carries the stored version and original created_at.
        if let Some(stored) = self.store.get_workflow(tenant, code).await? {
            workflow = stored;
        }
        info!(
            stage = "workflow_saved",
            ?upsert,
            online = workflow.online,
            "workflow saved"
        );
        Ok((upsert, workflow))
    }

    /// A target as the host's dispatcher keeps it, or why it is refused. A host without a
    /// dispatcher refuses every target rather than store one it would never serve.
    fn check_target(&self, target: Option<&Value>) -> Result<Option<Value>, Error> {
        let Some(target) = target else {
            return Ok(None);
        };
        let dispatcher = self
            .dispatcher
            .as_ref()
            .ok_or_else(|| Error::invalid("/target", "this host hands instances to no target"))?;
        dispatcher
            .check(target)
            .map(Some)
            .map_err(|why| Error::invalid("/target", why))
    }

    /// Refuses a DolphinScheduler code that another workflow of the tenant already has.
    async fn check_ds_code_free(&self, workflow: &Workflow) -> Result<(), Error> {
        let Some(ds_code) = workflow.ds_code else {
            return Ok(());
        };
        match self
            .store
            .workflow_by_ds_code(&workflow.tenant, ds_code)
            .await?
        {
            Some(other) if other.code != workflow.code => Err(Error::Conflict(format!(
                "ds_code {ds_code} already names workflow {}",
                other.code
            ))),
            _ => Ok(()),
        }
    }

    /// Reads the workflow that a DolphinScheduler definition code names.
    pub async fn workflow_by_ds_code(&self, tenant: &str, ds_code: i64) -> Result<Workflow, Error> {
        self.store
            .workflow_by_ds_code(tenant, ds_code)
            .await?
            .ok_or_else(|| Error::WorkflowNotFound(ds_code.to_string()))
    }

    /// Reads a workflow definition.
    pub async fn get_workflow(&self, tenant: &str, code: &str) -> Result<Workflow, Error> {
        identifier("code", code)?;
        self.store
            .get_workflow(tenant, code)
            .await?
            .ok_or_else(|| Error::WorkflowNotFound(code.to_owned()))
    }
}
