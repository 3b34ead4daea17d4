//! Flowgate's core: the domain, the ports, the use cases and the HTTP router. It names no
//! cloud: hosts plug their adapters into [`ports::Store`] and [`ports::Queue`], and their
//! metrics sink into [`metrics::Metrics`].

pub mod auth;
pub mod callback;
pub mod dead_reason;
pub mod dolphin;
pub mod error;
#[cfg(feature = "faults")]
pub mod faults;
pub mod http;
pub mod ids;
pub mod message;
pub mod metrics;
pub mod model;
pub mod paging;
pub mod pool;
pub mod ports;
pub mod record;
pub mod runs;
pub mod schedule;
pub mod schema_limits;
pub mod schemas;
pub mod trace;
pub mod usecases;
pub mod validation;

pub use error::{BackendError, Error, ErrorKind, InvalidParam, StoreError};
pub use usecases::{Flowgate, HostPorts};
