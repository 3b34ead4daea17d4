//! Lambda bootstrap of the reconciler (EventBridge schedule).

use std::sync::Arc;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_aws::emf::Emf;
use flowgate_core::usecases::Reconciler;
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Reconciler)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let reconciler = Arc::new(
        Reconciler::new(connected.store, connected.queue, settings.reconcile_grace)
            .with_metrics(Arc::new(Emf::stdout())),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CloudWatchEvent>| {
        let reconciler = reconciler.clone();
        async move {
            let report = flowgate_reconciler::handle(&reconciler, event.payload).await?;
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
