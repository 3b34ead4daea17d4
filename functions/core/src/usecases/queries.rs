//! Reading requests and instances.

use super::Flowgate;
use crate::error::Error;
use crate::model::{Instance, InstanceCursor, Page, RequestRecord};
use crate::paging::{self, PageParams, PageRequest};
use crate::validation::identifier;

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

    /// An instance; not found until the consumer has created it.
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
