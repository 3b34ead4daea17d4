//! Reading requests and instances.

use serde::{Deserialize, Serialize};

use super::Flowgate;
use crate::error::Error;
use crate::model::{Instance, InstanceCursor, InstanceStatus, Page, RequestRecord};
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

/// The most pages of the listing one filtered page reads.
const FILTER_READS: usize = 10;

/// The query of `GET /v1/workflows/{code}/instances`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceListParams {
    /// How many items, as text.
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only instances in this status.
    pub status: Option<String>,
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

    /// A page of a workflow's instances, newest first; with a `status`, only those in it.
    pub async fn list_instances(
        &self,
        tenant: &str,
        workflow: &str,
        params: &InstanceListParams,
    ) -> Result<Page<Instance>, Error> {
        let page_params = PageParams {
            limit: params.limit.clone(),
            cursor: params.cursor.clone(),
        };
        let request = PageRequest::<InstanceCursor>::parse(&page_params, paging::INSTANCES)?;
        let status = match params.status.as_deref() {
            None => None,
            Some(text) => Some(InstanceStatus::parse(text).ok_or_else(|| {
                Error::invalid(
                    "status",
                    format!(
                        "{text:?} is not one of CREATED, DISPATCHED, RUNNING, SUCCEEDED, FAILED, \
                         TIMED_OUT, CANCELLED"
                    ),
                )
            })?),
        };
        self.get_workflow(tenant, workflow).await?;
        let Some(status) = status else {
            let items = self
                .store
                .list_instances(tenant, workflow, request.probe(), request.after.as_ref())
                .await?;
            return Ok(paging::page(items, request.limit, InstanceCursor::after));
        };
        self.filtered_instances(tenant, workflow, &request, status)
            .await
    }

    /// A page of the instances in `status`: pages of the listing read in turn, at most
    /// [`FILTER_READS`] of them; a page cut short there carries the cursor of the last
    /// instance read, so that the next one goes on from it.
    async fn filtered_instances(
        &self,
        tenant: &str,
        workflow: &str,
        request: &PageRequest<InstanceCursor>,
        status: InstanceStatus,
    ) -> Result<Page<Instance>, Error> {
        let mut found = Vec::new();
        let mut after = request.after.clone();
        for _ in 0..FILTER_READS {
            let read = self
                .store
                .list_instances(tenant, workflow, request.probe(), after.as_ref())
                .await?;
            let exhausted = read.len() < request.probe();
            for instance in read {
                after = Some(InstanceCursor::after(&instance));
                if instance.status == status {
                    found.push(instance);
                    if found.len() == request.limit {
                        let next = after.as_ref().map(paging::encode_cursor);
                        return Ok(Page {
                            items: found,
                            next_cursor: next,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page {
                    items: found,
                    next_cursor: None,
                });
            }
        }
        Ok(Page {
            items: found,
            next_cursor: after.as_ref().map(paging::encode_cursor),
        })
    }
}
