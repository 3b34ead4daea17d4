//! Lambda bootstrap of the reconciler (EventBridge schedule).

use std::sync::Arc;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_aws::emf::Emf;
use flowgate_core::Flowgate;
use flowgate_core::usecases::{BackfillRunner, Reconciler};
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Reconciler)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let reconciler = Arc::new(
        Reconciler::new(
            connected.store.clone(),
            connected.queue.clone(),
            settings.reconcile_grace,
        )
        .with_metrics(Arc::new(Emf::stdout())),
    );
    let backfills = Arc::new(BackfillRunner::new(
        Flowgate::new(connected.store, connected.queue)
            .with_backfills(connected.backfills)
            .with_redelivery_bound(settings.redelivery_bound()),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CloudWatchEvent>| {
        let (reconciler, backfills) = (reconciler.clone(), backfills.clone());
        async move {
            let report =
                flowgate_reconciler::handle(&reconciler, Some(&backfills), event.payload).await?;
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
