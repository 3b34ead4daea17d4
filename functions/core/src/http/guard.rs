//! The layers a host puts in front of the router to say who is calling: bearer tokens (the
//! embedded host), and per-caller rate limits. A host that authenticates otherwise (the
//! cloud gateway) puts its own [`Caller`] on each request instead.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};

use super::problem::HttpError;
use crate::auth::{Caller, Denied, RateLimiter};
use crate::usecases::tokens::TokenAuth;

/// Why a request has no caller: set by [`with_tokens`], read by the `Tenant` extractor, so
/// that routes that need no caller (health, the contract) stay open.
#[derive(Debug, Clone)]
pub struct Denial(pub Denied);

/// The token a request carries: `Authorization: Bearer <token>`, or a `token` header (the
/// DolphinScheduler clients' form). More than one is refused.
pub(crate) fn presented(headers: &HeaderMap) -> Result<Option<String>, Denied> {
    let mut found = Vec::new();
    for value in headers.get_all(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| Denied::Unauthenticated("the Authorization header is not text".into()))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or_else(|| {
                Denied::Unauthenticated("Authorization must be `Bearer <token>`".into())
            })?;
        found.push(token.trim().to_owned());
    }
    for value in headers.get_all("token") {
        let text = value
            .to_str()
            .map_err(|_| Denied::Unauthenticated("the token header is not text".into()))?;
        found.push(text.trim().to_owned());
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Denied::Unauthenticated(
            "send one token, in one header".into(),
        )),
    }
}

/// Authenticates each request by its token against `auth`, putting its [`Caller`] (or why
/// there is none) on the request.
pub fn with_tokens(router: Router, auth: Arc<TokenAuth>) -> Router {
    router.layer(middleware::from_fn(
        move |mut request: Request, next: Next| {
            let auth = auth.clone();
            async move {
                let outcome = match presented(request.headers()) {
                    Ok(token) => auth.caller(token.as_deref()).await,
                    Err(denied) => Err(denied),
                };
                match outcome {
                    Ok(caller) => {
                        request.extensions_mut().insert(caller);
                    }
                    Err(denied) => {
                        request.extensions_mut().insert(Denial(denied));
                    }
                }
                next.run(request).await
            }
        },
    ))
}

/// Limits each caller to its token's own rate, or to `per_tenant` requests a second for its
/// tenant (0: no limit). Over it: 429 with `Retry-After`.
pub fn with_rate_limit(router: Router, per_tenant: u32) -> Router {
    let limiter = Arc::new(RateLimiter::default());
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let limiter = limiter.clone();
        async move {
            if let Some(caller) = request.extensions().get::<Caller>() {
                let limit = caller.rate.unwrap_or(per_tenant);
                if let Err(retry_after) = limiter.take(&caller.limit_key, limit) {
                    let refused = HttpError::from(Denied::RateLimited { limit, retry_after });
                    return super::refuse(request.uri().path(), refused);
                }
            }
            next.run(request).await
        }
    }))
}
