//! A start through the DolphinScheduler door: the definition found by its code in the
//! caller's tenant and the path's project, its string parameters typed by the workflow's
//! schema, then one start, or a backfill for a complement.

use serde_json::Value;
use tracing::info;

use super::backfills::BackfillBody;
use super::{Flowgate, StartRequest};
use crate::dolphin::{Complement, ComplementDates, DsStart, typed};
use crate::error::Error;
use crate::model::Workflow;
use crate::trace::TraceContext;
use crate::validation::StartBody;

/// The cron DolphinScheduler expands a complement range by when the definition has no
/// schedule: daily at midnight.
pub const DEFAULT_COMPLEMENT_CRON: &str = "0 0 0 * * ? *";

/// What a door call started.
#[derive(Debug, Clone, PartialEq)]
pub struct DsStarted {
    /// The request of each instance asked for, in start order: one for a start, one per
    /// date for a complement.
    pub request_ids: Vec<String>,
    /// The backfill a complement became.
    pub backfill_id: Option<String>,
    /// The call was a retry (the same `Idempotency-Key`): this is what the first started.
    pub replayed: bool,
}

impl Flowgate {
    /// Starts what a DolphinScheduler call asks for, under `project_code`.
    pub async fn start_dolphin(
        &self,
        tenant: &str,
        project_code: i64,
        mut call: DsStart,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
    ) -> Result<DsStarted, Error> {
        let workflow = self
            .ds_definition(tenant, project_code, call.definition_code)
            .await?;
        info!(stage = "dolphinscheduler_call", workflow = %workflow.code, ds_code = call.definition_code, complement = call.complement.is_some(), "start through the DolphinScheduler door");
        typed(&workflow.params_schema, &mut call.params);
        match call.complement.clone() {
            None => {
                self.ds_start(tenant, &workflow, call, idempotency_key, trace)
                    .await
            }
            Some(complement) => {
                self.ds_complement(tenant, &workflow, call, complement, idempotency_key)
                    .await
            }
        }
    }

    /// The definition `ds_code` names, if it is in this project (DolphinScheduler answers a
    /// definition of another project as not existing) and online (checked here for a
    /// complement too, which would otherwise record a backfill of refused dates).
    async fn ds_definition(
        &self,
        tenant: &str,
        project_code: i64,
        ds_code: i64,
    ) -> Result<Workflow, Error> {
        let workflow = self.workflow_by_ds_code(tenant, ds_code).await?;
        match workflow.ds_project_code {
            Some(p) if p != project_code => Err(Error::WorkflowNotFound(ds_code.to_string())),
            _ if !workflow.online => Err(Error::WorkflowOffline(workflow.code)),
            _ => Ok(workflow),
        }
    }

    async fn ds_start(
        &self,
        tenant: &str,
        workflow: &Workflow,
        call: DsStart,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
    ) -> Result<DsStarted, Error> {
        let outcome = self
            .start_instance(StartRequest {
                tenant: tenant.to_owned(),
                workflow: workflow.code.clone(),
                body: StartBody {
                    params: Some(Value::Object(call.params)),
                    priority: Some(call.priority),
                    schedule_time: None,
                },
                idempotency_key,
                wait: None,
                origin: None,
                options: call.options,
                trace,
                dry_run: call.dry_run,
            })
            .await?;
        Ok(DsStarted {
            request_ids: vec![outcome.record.request_id],
            backfill_id: None,
            replayed: outcome.replayed,
        })
    }

    /// A complement runs every date of the call, each once for this call, as
    /// DolphinScheduler re-runs past dates: its dates are keyed by (backfill, date), never
    /// skipped for an instance an earlier call made. A call sent again with the same
    /// `Idempotency-Key` is that backfill, not another.
    async fn ds_complement(
        &self,
        tenant: &str,
        workflow: &Workflow,
        call: DsStart,
        complement: Complement,
        idempotency_key: Option<String>,
    ) -> Result<DsStarted, Error> {
        let mut body = BackfillBody {
            order: complement.order,
            max_in_flight: complement.max_in_flight,
            params: call.params,
            priority: call.priority,
            options: call.options,
            reprocess: true,
            no_hand_off: call.dry_run,
            ..BackfillBody::default()
        };
        match complement.dates {
            ComplementDates::List(dates) => body.dates = Some(dates),
            // A range whose ends are equal is that one instant, whatever the cron says.
            ComplementDates::Range { from, to } if from == to => body.dates = Some(vec![from]),
            ComplementDates::Range { from, to } => {
                (body.from, body.to) = (Some(from), Some(to));
                body.fallback_cron = Some(DEFAULT_COMPLEMENT_CRON.to_owned());
            }
        }
        let started = self
            .start_backfill(tenant, &workflow.code, body, idempotency_key.as_deref())
            .await?;
        Ok(DsStarted {
            request_ids: started.request_ids,
            backfill_id: started.backfill_id,
            replayed: started.replayed,
        })
    }
}
