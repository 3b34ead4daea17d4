//! Lambda bootstrap of the API: `lambda_http::run(router)`.

use std::sync::Arc;

use flowgate_aws::emf::Emf;
use flowgate_core::Flowgate;
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Api)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let flowgate = Flowgate::new(connected.store, connected.queue)
        .with_metrics(Arc::new(Emf::stdout()))
        .with_dispatcher(Arc::new(flowgate_targets::Checker::new(
            settings.allow_private_targets,
        )))
        .with_redelivery_bound(settings.redelivery_bound())
        .with_validation_budget(settings.validation_budget);
    let flowgate = flowgate.with_backfills(connected.backfills);
    let flowgate = match connected.schedules {
        Some(schedules) => flowgate.with_schedules(schedules),
        None => flowgate,
    };
    let app = flowgate_api::app(
        flowgate,
        flowgate_api::TenantRules::from_settings(&settings),
    );
    lambda_http::run(app).await
}
