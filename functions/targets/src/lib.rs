//! Flowgate's hand-off adapters: [`Targets`] implements the dispatcher port for the three
//! kinds of target a workflow may name.
//! - `webhook`: a signed POST (see [`signature`]), guarded against private addresses
//!   (see [`guard`]);
//! - `stepfunctions`: StartExecution named by the instance id;
//! - `eventbridge`: PutEvents, at least once.
//!
//! The AWS clients are made on first use, so a host that never names an AWS target needs
//! no AWS configuration.

mod eventbridge;
pub mod guard;
pub mod signature;
mod stepfunctions;
mod webhook;

use async_trait::async_trait;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;

use flowgate_core::model::Instance;
use flowgate_core::ports::{DispatchError, Dispatcher, Receipt};
use flowgate_core::trace::TraceContext;

pub use eventbridge::EventBridgeTarget;
pub use stepfunctions::StepFunctionsTarget;
pub use webhook::WebhookTarget;

/// A target, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Target {
    /// `{"type": "webhook", "url", "timeout", "secret"}`.
    Webhook(WebhookTarget),
    /// `{"type": "stepfunctions", "state_machine_arn"}`.
    Stepfunctions(StepFunctionsTarget),
    /// `{"type": "eventbridge", "event_bus", "source", "detail_type"}`.
    Eventbridge(EventBridgeTarget),
}

/// The AWS clients, made on first use.
struct AwsClients {
    sfn: aws_sdk_sfn::Client,
    events: aws_sdk_eventbridge::Client,
}

/// The dispatcher over every kind of target.
pub struct Targets {
    checker: Checker,
    webhooks: webhook::Webhooks,
    aws: OnceCell<AwsClients>,
}

/// Checks targets without handing anything off: the dispatcher of a host that only stores
/// workflows (the API function), which so links no HTTP or AWS client code for targets.
pub struct Checker {
    allow_private: bool,
}

impl Targets {
    /// The dispatcher; webhooks reach private addresses only when `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        Self {
            checker: Checker::new(allow_private),
            webhooks: webhook::Webhooks::new(allow_private),
            aws: OnceCell::new(),
        }
    }

    async fn aws(&self) -> &AwsClients {
        self.aws
            .get_or_init(|| async {
                let config = flowgate_aws::sdk_config().await;
                AwsClients {
                    sfn: aws_sdk_sfn::Client::new(&config),
                    events: aws_sdk_eventbridge::Client::new(&config),
                }
            })
            .await
    }
}

impl Checker {
    /// A checker; webhooks to private addresses pass only when `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Parses and checks a target.
    pub fn parse(&self, target: &Value) -> Result<Target, String> {
        let kind = target
            .get("type")
            .and_then(Value::as_str)
            .ok_or("must be an object with a \"type\": webhook, stepfunctions or eventbridge")?;
        let parsed: Target = serde_json::from_value(target.clone()).map_err(|e| {
            if matches!(kind, "webhook" | "stepfunctions" | "eventbridge") {
                format!("is not a valid {kind} target: {e}")
            } else {
                format!("type {kind:?} is not webhook, stepfunctions or eventbridge")
            }
        })?;
        Ok(match parsed {
            Target::Webhook(w) => Target::Webhook(w.check(self.allow_private)?),
            Target::Stepfunctions(s) => Target::Stepfunctions(s.check()?),
            Target::Eventbridge(e) => Target::Eventbridge(e.check()?),
        })
    }

    fn normalized(&self, target: &Value) -> Result<Value, String> {
        let target = self.parse(target)?;
        serde_json::to_value(target).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Dispatcher for Checker {
    fn check(&self, target: &Value) -> Result<Value, String> {
        self.normalized(target)
    }

    async fn dispatch(
        &self,
        _: &Value,
        _: &Instance,
        _: Option<&TraceContext>,
    ) -> Result<Receipt, DispatchError> {
        Err(DispatchError::permanent(
            "this host checks targets but hands nothing off",
        ))
    }
}

#[async_trait]
impl Dispatcher for Targets {
    fn check(&self, target: &Value) -> Result<Value, String> {
        self.checker.normalized(target)
    }

    async fn dispatch(
        &self,
        target: &Value,
        instance: &Instance,
        trace: Option<&TraceContext>,
    ) -> Result<Receipt, DispatchError> {
        // A target stored by an older build, or edited by hand, is checked again here.
        let target = self
            .checker
            .parse(target)
            .map_err(|why| DispatchError::permanent(format!("the workflow's target {why}")))?;
        match target {
            Target::Webhook(w) => self.webhooks.send(&w, instance, trace).await,
            Target::Stepfunctions(s) => {
                stepfunctions::start(&self.aws().await.sfn, &s, instance).await
            }
            Target::Eventbridge(e) => {
                eventbridge::put(&self.aws().await.events, &e, instance).await
            }
        }
    }

    async fn status(
        &self,
        target: &Value,
        _instance: &Instance,
        reference: &str,
    ) -> Result<Option<flowgate_core::runs::Report>, DispatchError> {
        let target = self
            .checker
            .parse(target)
            .map_err(|why| DispatchError::permanent(format!("the workflow's target {why}")))?;
        match target {
            Target::Stepfunctions(_) => Ok(Some(
                stepfunctions::describe(&self.aws().await.sfn, reference).await?,
            )),
            // A webhook reports through its callback; an event cannot be asked about.
            Target::Webhook(_) | Target::Eventbridge(_) => Ok(None),
        }
    }

    async fn cancel(
        &self,
        target: &Value,
        instance: &Instance,
        reference: Option<&str>,
    ) -> Result<Option<String>, DispatchError> {
        let target = self
            .checker
            .parse(target)
            .map_err(|why| DispatchError::permanent(format!("the workflow's target {why}")))?;
        let receipt = match target {
            Target::Webhook(w) => self.webhooks.cancel(&w, instance).await?,
            Target::Stepfunctions(s) => {
                stepfunctions::stop(&self.aws().await.sfn, &s, instance, reference).await?
            }
            // An event put on a bus cannot be taken back.
            Target::Eventbridge(_) => return Ok(None),
        };
        Ok(Some(receipt.reference))
    }
}

/// An SDK call's failure, classified as the store's are.
fn sdk_failure<E, R>(op: &'static str, err: aws_sdk_sfn::error::SdkError<E, R>) -> DispatchError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let classified = flowgate_aws::classify(op, err);
    let reason = classified.chain();
    if classified.is_retryable() {
        DispatchError::retryable(reason)
    } else {
        DispatchError::permanent(reason)
    }
}

/// Installs ring as the process's TLS provider (as the SDKs use), once; the HTTPS client of
/// the webhooks needs one. Any provider already installed is kept.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
