//! A workflow's DolphinScheduler code on DynamoDB. An alias item `T#{tenant}#DS#{code}`
//! names the workflow that carries the code. It is written before the workflow and checked
//! against it on every read, so a crash between the two writes leaves only an alias that
//! reads ignore and the next claim takes over.

use aws_sdk_dynamodb::types::AttributeValue;

use flowgate_core::BackendError;
use flowgate_core::model::Workflow;

use super::{DynamoStore, MAX_RACES, is_condition_failure, s};
use crate::error::classify;
use crate::items::ds_alias_key;

const ALIAS_SK: &str = "DS";

impl DynamoStore {
    /// Points `ds_code`'s alias at workflow `code`: creates it, or takes over one whose
    /// workflow no longer carries that code. Fails (retryably) while another workflow
    /// carries it.
    pub(super) async fn claim_ds_code(
        &self,
        tenant: &str,
        code: &str,
        ds_code: i64,
    ) -> Result<(), BackendError> {
        const OP: &str = "store.put_workflow";
        for _ in 0..MAX_RACES {
            let owner = self.alias_owner(OP, tenant, ds_code).await?;
            if owner.as_deref() == Some(code) {
                return Ok(());
            }
            if let Some(owner) = &owner
                && self.carries(tenant, owner, ds_code).await?
            {
                return Err(BackendError::retryable(
                    OP,
                    format!("ds_code {ds_code} already names workflow {owner}"),
                ));
            }
            if self
                .put_alias(OP, tenant, code, ds_code, owner.as_deref())
                .await?
            {
                return Ok(());
            }
        }
        Err(BackendError::retryable(
            OP,
            "too many concurrent claims of this ds_code",
        ))
    }

    /// Removes `ds_code`'s alias if it still names workflow `code`.
    pub(super) async fn release_ds_code(
        &self,
        tenant: &str,
        code: &str,
        ds_code: i64,
    ) -> Result<(), BackendError> {
        const OP: &str = "store.put_workflow";
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(ds_alias_key(tenant, ds_code)))
            .key("sk", s(ALIAS_SK))
            .condition_expression("code = :code")
            .expression_attribute_values(":code", s(code))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(()),
            Err(e) => Err(classify(OP, e)),
        }
    }

    /// The workflow that carries `ds_code`, read through its alias and checked against it.
    pub(super) async fn find_by_ds_code(
        &self,
        tenant: &str,
        ds_code: i64,
    ) -> Result<Option<Workflow>, BackendError> {
        const OP: &str = "store.workflow_by_ds_code";
        let Some(owner) = self.alias_owner(OP, tenant, ds_code).await? else {
            return Ok(None);
        };
        let workflow = self.workflow(tenant, &owner).await?;
        Ok(workflow.filter(|w| w.ds_code == Some(ds_code)))
    }

    async fn alias_owner(
        &self,
        op: &'static str,
        tenant: &str,
        ds_code: i64,
    ) -> Result<Option<String>, BackendError> {
        let item = self
            .get(op, ds_alias_key(tenant, ds_code), ALIAS_SK)
            .await?;
        Ok(item.and_then(|mut i| match i.remove("code") {
            Some(AttributeValue::S(code)) => Some(code),
            _ => None,
        }))
    }

    async fn carries(&self, tenant: &str, code: &str, ds_code: i64) -> Result<bool, BackendError> {
        let workflow = self.workflow(tenant, code).await?;
        Ok(workflow.is_some_and(|w| w.ds_code == Some(ds_code)))
    }

    /// Writes the alias if it still names `expected` (or, with `None`, does not exist).
    async fn put_alias(
        &self,
        op: &'static str,
        tenant: &str,
        code: &str,
        ds_code: i64,
        expected: Option<&str>,
    ) -> Result<bool, BackendError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(ds_alias_key(tenant, ds_code)))
            .item("sk", s(ALIAS_SK))
            .item("code", s(code));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(owner) => put
                .condition_expression("code = :owner")
                .expression_attribute_values(":owner", s(owner)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(classify(op, e)),
        }
    }
}
