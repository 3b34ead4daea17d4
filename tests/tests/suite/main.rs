//! The integration suite, one binary: each module was once its own test target. One
//! binary links once, which keeps a clean build small (each linked test binary is tens of
//! megabytes) and quick. Run one module with `cargo test -p flowgate-tests --test suite <module>::`.

mod backfills;
mod backfills_aws;
mod conformance_aws;
mod conformance_embedded;
mod dlq_aws;
mod dlq_embedded;
mod docs;
mod dolphin;
mod lambda;
mod openapi;
mod pipeline;
mod pipeline_aws;
mod router;
mod schedules;
mod schedules_aws;
mod security;
mod template;
mod usecases;
