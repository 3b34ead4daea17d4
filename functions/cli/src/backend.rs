//! Opening the backend a command works on: the embedded store under a data directory, or
//! DynamoDB and SQS.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use flowgate_core::ports::{Queue, Store};
use flowgate_embedded::{Embedded, EmbeddedConfig};

use crate::config::Backend;

/// The store and the queue of one backend.
pub type Ports = (Arc<dyn Store>, Arc<dyn Queue>);

/// Opens `backend`; `data_dir` and `config` only matter to the embedded one.
pub async fn open(
    backend: Backend,
    data_dir: &Path,
    config: EmbeddedConfig,
) -> Result<Ports, Box<dyn Error>> {
    match backend {
        Backend::Embedded => {
            let embedded = Embedded::open(data_dir, config)?;
            Ok((embedded.clone(), embedded))
        }
        Backend::Aws => crate::aws::ports().await,
    }
}
