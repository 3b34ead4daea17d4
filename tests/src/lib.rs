//! Shared test code: the conformance suite every backend must pass, and fixtures.

pub mod aws;
pub mod binary;
pub mod capacity;
pub mod conformance;
mod conformance_backfills;
mod conformance_dispatch;
mod conformance_dlq;
mod conformance_schedules;
pub mod dlq;
pub mod fixtures;
pub mod http;
pub mod isolation;
pub mod pipeline;
pub mod receiver;
pub mod sqs_event;

/// An HTTP client for tests (with the TLS provider every Flowgate client installs).
pub fn client() -> reqwest::Client {
    flowgate_targets::install_tls_provider();
    reqwest::Client::new()
}
