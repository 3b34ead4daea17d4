//! Registering and reading workflow definitions.

use chrono::Utc;
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
        let now = Utc::now();
        let mut workflow = Workflow {
            tenant: tenant.to_owned(),
            code: code.to_owned(),
            name: body.name.trim().to_owned(),
            online: body.online,
            params_schema: body.params_schema,
            version: 0,
            created_at: now,
            updated_at: now,
        };
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

    /// Reads a workflow definition.
    pub async fn get_workflow(&self, tenant: &str, code: &str) -> Result<Workflow, Error> {
        identifier("code", code)?;
        self.store
            .get_workflow(tenant, code)
            .await?
            .ok_or_else(|| Error::WorkflowNotFound(code.to_owned()))
    }
}
