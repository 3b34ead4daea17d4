//! The API Lambda: the same axum router as `flowgate serve`, behind an API Gateway HTTP API.
//! The only Lambda-specific part is the tenant, taken from the authorizer context.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tower::ServiceBuilder;

use flowgate_core::Flowgate;
use flowgate_core::http::{TenantId, router};
use flowgate_core::model::DEFAULT_TENANT;

/// The tenant of an API Gateway request:
/// - with a JWT authorizer, the `claim` claim, or the subject (`sub`) if it is absent;
/// - with IAM authorization, the caller's ARN;
/// - with no authorizer context, `default`.
pub fn tenant_of<B>(request: &Request<B>, claim: &str) -> String {
    let authorizer = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref(),
        _ => None,
    };
    let Some(authorizer) = authorizer else {
        return DEFAULT_TENANT.to_owned();
    };
    if let Some(jwt) = &authorizer.jwt {
        let from = |name: &str| jwt.claims.get(name).filter(|v| !v.is_empty()).cloned();
        if let Some(tenant) = from(claim).or_else(|| from("sub")) {
            return tenant;
        }
    }
    if let Some(iam) = &authorizer.iam
        && let Some(arn) = iam.user_arn.as_ref().filter(|a| !a.is_empty())
    {
        return arn.clone();
    }
    DEFAULT_TENANT.to_owned()
}

/// The router with the tenant put in each request's extensions.
pub fn app(flowgate: Flowgate, claim: String) -> Router {
    router(flowgate).layer(
        ServiceBuilder::new().map_request(move |mut request: Request<Body>| {
            let tenant = tenant_of(&request, &claim);
            request.extensions_mut().insert(TenantId(tenant));
            request
        }),
    )
}
