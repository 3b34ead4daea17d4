//! Lambda bootstrap of the API: `lambda_http::run(router)`.

use std::sync::Arc;

use flowgate_aws::emf::Emf;
use flowgate_core::{Flowgate, HostPorts};
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Api)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let flowgate = Flowgate::build(
        &settings,
        HostPorts {
            store: connected.store,
            queue: connected.queue,
            schedules: connected.schedules,
            backfills: Some(connected.backfills),
            dispatcher: Some(Arc::new(flowgate_targets::Checker::new(
                settings.allow_private_targets,
            ))),
            metrics: Some(Arc::new(Emf::stdout())),
        },
    );
    let app = flowgate_api::app(
        flowgate,
        flowgate_api::TenantRules::from_settings(&settings),
    );
    lambda_http::run(app).await
}
