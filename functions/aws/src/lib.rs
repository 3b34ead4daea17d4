//! Flowgate's AWS backend: [`DynamoStore`] implements the store port on one DynamoDB table,
//! [`SqsQueue`] the queue port on an SQS queue with a dead-letter queue, and [`emf::Emf`]
//! the metrics port as CloudWatch EMF lines, and [`AwsSchedules`] the schedules port on
//! DynamoDB records fired by EventBridge Scheduler. `bootstrap` creates the resources on any
//! endpoint (moto, or an account).

pub mod bootstrap;
pub mod config;
mod connect;
mod dynamo;
pub mod emf;
mod error;
/// The item shapes: public only so that tests can write items of earlier layouts.
#[doc(hidden)]
pub mod items;
pub mod scheduler;
mod schedules;
mod sqs;
mod sqs_dlq;
pub mod states;

pub use config::sdk_config;
pub use connect::{ConnectError, Connected, connect};
pub use dynamo::DynamoStore;
pub use error::classify;
pub use schedules::AwsSchedules;
pub use sqs::SqsQueue;
