//! Reading requests and instances.

use serde::{Deserialize, Serialize};

use super::Flowgate;
use crate::error::Error;
use crate::model::{Instance, InstanceCursor, Page, RequestRecord};
use crate::paging::{self, PageParams, PageRequest};
use crate::validation::{idempotency_key, identifier};

/// The query of `GET /v1/find`: a request id, an instance id or an idempotency key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindParams {
    /// What to look for.
    pub q: String,
}

/// What a find matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    /// The text is the request's id.
    RequestId,
    /// The text is the id of the request's instance.
    InstanceId,
    /// The text is the idempotency key the request was started with.
    IdempotencyKey,
}

impl Flowgate {
    /// A request record with its history.
    pub async fn get_request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<RequestRecord, Error> {
        identifier("request_id", request_id)?;
        self.store
            .get_request(tenant, request_id)
            .await?
            .ok_or_else(|| Error::RequestNotFound(request_id.to_owned()))
    }

    /// The caller's request that `text` names: its id, its instance's id, or its
    /// idempotency key, tried in that order.
    pub async fn find_request(
        &self,
        tenant: &str,
        text: &str,
    ) -> Result<(Matched, RequestRecord), Error> {
        let refused = || {
            let reason = "must be a request id, an instance id or an idempotency key \
                          (1 to 255 printable ASCII characters)";
            Error::invalid("q", reason)
        };
        if text.len() > crate::validation::MAX_KEY_LEN {
            return Err(refused());
        }
        let key = idempotency_key(text.as_bytes()).map_err(|_| refused())?;
        if identifier("q", text).is_ok() {
            if let Some(record) = self.store.get_request(tenant, text).await? {
                return Ok((Matched::RequestId, record));
            }
            if let Some(instance) = self.store.get_instance(tenant, text).await? {
                let record = self.get_request(tenant, &instance.request_id).await?;
                return Ok((Matched::InstanceId, record));
            }
        }
        let request_id = crate::ids::request_id(tenant, Some(&key));
        match self.store.get_request(tenant, &request_id).await? {
            Some(record) => Ok((Matched::IdempotencyKey, record)),
            None => Err(Error::RequestNotFound(text.to_owned())),
        }
    }

    /// An instance with its hand-off state; not found until the consumer has created it.
    pub async fn get_instance(&self, tenant: &str, instance_id: &str) -> Result<Instance, Error> {
        identifier("instance_id", instance_id)?;
        self.store
            .get_instance(tenant, instance_id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))
    }

    /// A page of a workflow's instances, newest first.
    pub async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        params: &PageParams,
    ) -> Result<Page<Instance>, Error> {
        let request = PageRequest::<InstanceCursor>::parse(params, paging::INSTANCES)?;
        self.get_workflow(tenant, workflow).await?;
        let items = self
            .store
            .list_instances(tenant, workflow, request.probe(), request.after.as_ref())
            .await?;
        Ok(paging::page(items, request.limit, InstanceCursor::after))
    }
}
