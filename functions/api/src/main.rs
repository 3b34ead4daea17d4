//! Lambda bootstrap of the API: `lambda_http::run(router)`.

use std::sync::Arc;

use flowgate_core::Flowgate;
use flowgate_core::metrics::EmfStdout;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let connected = flowgate_aws::connect().await?;
    let claim = std::env::var("FLOWGATE_TENANT_CLAIM")
        .unwrap_or_else(|_| flowgate_api::DEFAULT_TENANT_CLAIM.to_owned());
    let flowgate =
        Flowgate::new(connected.store, connected.queue).with_metrics(Arc::new(EmfStdout));
    let app = flowgate_api::app(flowgate, claim);
    lambda_http::run(app).await
}
