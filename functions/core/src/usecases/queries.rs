//! Reading requests and instances.

use super::Flowgate;
use crate::api_error::ApiError;
use crate::model::{Instance, InstanceCursor, Page, RequestRecord};
use crate::validation::invalid;

/// The largest page `list_instances` returns.
pub const MAX_PAGE: usize = 100;
/// The page size when the client names none.
pub const DEFAULT_PAGE: usize = 20;

impl Flowgate {
    /// A request record with its history.
    pub async fn get_request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<RequestRecord, ApiError> {
        self.store
            .get_request(tenant, request_id)
            .await?
            .ok_or_else(|| ApiError::RequestNotFound(request_id.to_owned()))
    }

    /// An instance; not found until the consumer has created it.
    pub async fn get_instance(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Instance, ApiError> {
        self.store
            .get_instance(tenant, instance_id)
            .await?
            .ok_or_else(|| ApiError::InstanceNotFound(instance_id.to_owned()))
    }

    /// A page of a workflow's instances, newest first.
    pub async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<Instance>, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid("limit", format!("must be from 1 to {MAX_PAGE}")));
        }
        let after = match cursor {
            None => None,
            Some(text) => Some(
                InstanceCursor::decode(text)
                    .ok_or_else(|| invalid("cursor", "is not a cursor this API returned"))?,
            ),
        };
        self.get_workflow(tenant, workflow).await?;
        // One extra item tells whether another page exists.
        let mut items = self
            .store
            .list_instances(tenant, workflow, limit + 1, after.as_ref())
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| InstanceCursor::after(i).encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
