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

    /// An instance with its hand-off state; not found until the consumer has created it.
    pub async fn get_instance(&self, tenant: &str, instance_id: &str) -> Result<Instance, Error> {
        identifier("instance_id", instance_id)?;
        let instance = self
            .store
            .get_instance(tenant, instance_id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))?;
        self.with_dispatch(instance).await
    }

    /// The instance with the hand-off state its request record holds (the one place it is
    /// kept), so every view of an instance agrees with its request's history.
    async fn with_dispatch(&self, instance: Instance) -> Result<Instance, Error> {
        Ok(
            match self
                .store
                .get_request(&instance.tenant, &instance.request_id)
                .await?
            {
                Some(record) => instance.with_dispatch(&record),
                None => instance,
            },
        )
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
        let listed = self
            .store
            .list_instances(tenant, workflow, request.probe(), request.after.as_ref())
            .await?;
        let mut items = Vec::with_capacity(listed.len());
        for instance in listed {
            items.push(self.with_dispatch(instance).await?);
        }
        Ok(paging::page(items, request.limit, InstanceCursor::after))
    }
}
