//! Flowgate's AWS backend: [`DynamoStore`] implements the store port on one DynamoDB table,
//! [`SqsQueue`] the queue port on an SQS queue with a dead-letter queue. `bootstrap` creates
//! both on any endpoint (moto, or an account).

pub mod bootstrap;
pub mod config;
mod connect;
mod dynamo;
mod error;
mod items;
mod sqs;
mod sqs_dlq;

pub use config::{AwsConfig, sdk_config};
pub use connect::{ConnectError, Connected, connect};
pub use dynamo::DynamoStore;
pub use sqs::SqsQueue;
