//! Lambda bootstrap of the API: `lambda_http::run(router)`.

use flowgate_core::Flowgate;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let connected = flowgate_aws::connect().await?;
    let claim = std::env::var("FLOWGATE_TENANT_CLAIM")
        .unwrap_or_else(|_| flowgate_api::DEFAULT_TENANT_CLAIM.to_owned());
    let app = flowgate_api::app(Flowgate::new(connected.store, connected.queue), claim);
    lambda_http::run(app).await
}
