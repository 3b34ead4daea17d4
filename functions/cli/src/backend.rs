//! Opening the backend a command works on: the embedded store under a data directory, or
//! DynamoDB and SQS, as the settings say.

use std::error::Error;
use std::sync::Arc;

use flowgate_core::ports::{Backfills, Queue, Schedules, Store, Tokens};
use flowgate_embedded::{Embedded, EmbeddedConfig};
use flowgate_settings::{Backend, Settings};

/// The store and the queue of one backend.
pub type Ports = (Arc<dyn Store>, Arc<dyn Queue>);

/// A backend's ports, with those only some backends keep.
pub struct Opened {
    /// Requests, instances and workflows.
    pub store: Arc<dyn Store>,
    /// The queue and its dead-letter queue.
    pub queue: Arc<dyn Queue>,
    /// API tokens (the embedded backend; on AWS the gateway authenticates).
    pub tokens: Option<Arc<dyn Tokens>>,
    /// Schedules (the embedded backend).
    pub schedules: Option<Arc<dyn Schedules>>,
    /// Backfills (the embedded backend).
    pub backfills: Option<Arc<dyn Backfills>>,
    /// The embedded store itself, for what only it can tell (queue depths, writer timings).
    pub embedded: Option<Arc<Embedded>>,
}

/// Opens the backend `settings` name.
pub async fn open(settings: &Settings) -> Result<Ports, Box<dyn Error>> {
    let opened = open_all(settings).await?;
    Ok((opened.store, opened.queue))
}

/// Opens the backend `settings` name, with every port it keeps.
pub async fn open_all(settings: &Settings) -> Result<Opened, Box<dyn Error>> {
    match settings.backend {
        Backend::Embedded => {
            let embedded =
                Embedded::open(&settings.data_dir, EmbeddedConfig::from_settings(settings))?;
            Ok(Opened {
                store: embedded.clone(),
                queue: embedded.clone(),
                tokens: Some(embedded.clone()),
                schedules: Some(embedded.clone()),
                backfills: Some(embedded.clone()),
                embedded: Some(embedded),
            })
        }
        Backend::Aws => {
            let connected = flowgate_aws::connect(settings).await?;
            Ok(Opened {
                store: connected.store,
                queue: connected.queue,
                schedules: connected.schedules,
                tokens: None,
                backfills: Some(connected.backfills),
                embedded: None,
            })
        }
    }
}
