//! Opening the backend a command works on: the embedded store under a data directory, or
//! DynamoDB and SQS, as the settings say.

use std::error::Error;
use std::sync::Arc;

use flowgate_core::ports::{Queue, Store, Tokens};
use flowgate_embedded::{Embedded, EmbeddedConfig};
use flowgate_settings::{Backend, Settings};

/// The store and the queue of one backend.
pub type Ports = (Arc<dyn Store>, Arc<dyn Queue>);

/// Opens the backend `settings` name.
pub async fn open(settings: &Settings) -> Result<Ports, Box<dyn Error>> {
    let (store, queue, _) = open_with_tokens(settings).await?;
    Ok((store, queue))
}

/// Opens the backend `settings` name, with its token store where it keeps one (the
/// embedded backend does; on AWS the gateway authenticates).
pub async fn open_with_tokens(
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Arc<dyn Queue>, Option<Arc<dyn Tokens>>), Box<dyn Error>> {
    match settings.backend {
        Backend::Embedded => {
            let embedded =
                Embedded::open(&settings.data_dir, EmbeddedConfig::from_settings(settings))?;
            Ok((embedded.clone(), embedded.clone(), Some(embedded)))
        }
        Backend::Aws => {
            let connected = flowgate_aws::connect(settings).await?;
            Ok((connected.store, connected.queue, None))
        }
    }
}
