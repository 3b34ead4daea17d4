//! The API Lambda: the same axum router as `flowgate serve`, behind an API Gateway HTTP API.
//! The only Lambda-specific part is the caller, taken from the authorizer context, which
//! fails closed: no tenant means 401 or 403, never a shared default.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tower::ServiceBuilder;

use flowgate_core::Flowgate;
use flowgate_core::auth::{Caller, Denied, Scope, check_tenant};
use flowgate_core::http::{Denial, router};
use flowgate_settings::{IamTenant, Settings};

/// How an authorizer context names a caller's tenant.
#[derive(Debug, Clone)]
pub struct TenantRules {
    /// The JWT claim that names the tenant.
    pub claim: String,
    /// Fall back to the JWT's `sub` when the claim is absent.
    pub from_sub: bool,
    /// How an IAM caller maps to a tenant.
    pub iam: IamTenant,
}

impl TenantRules {
    /// The rules the settings give.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            claim: settings.tenant_claim.clone(),
            from_sub: settings.tenant_from_sub,
            iam: settings.iam_tenant,
        }
    }
}

/// The stable principal of an IAM caller: a user's ARN as it is, and an assumed role's
/// role ARN without the session name (which the caller picks).
pub fn stable_principal(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    match (service, resource.split_once('/')) {
        ("sts", Some(("assumed-role", role_and_session))) => {
            let role = role_and_session.split('/').next()?;
            Some(format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        ("iam", _) => Some(arn.to_owned()),
        _ => None,
    }
}

/// The caller of an API Gateway request:
/// - with a JWT authorizer: the tenant is the configured claim (or `sub`, if configured to
///   fall back), and the scopes are the token's `flowgate/*` scopes;
/// - with IAM authorization: the tenant is the stable principal or the account, with every
///   scope (IAM policy decides who may call);
/// - with neither: refused.
pub fn caller_of<B>(request: &Request<B>, rules: &TenantRules) -> Result<Caller, Denied> {
    let authorizer = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref(),
        _ => None,
    };
    let Some(authorizer) = authorizer else {
        return Err(Denied::Unauthenticated(
            "the request has no authorizer context".into(),
        ));
    };
    if let Some(jwt) = &authorizer.jwt {
        let claim = |name: &str| jwt.claims.get(name).filter(|v| !v.is_empty()).cloned();
        let tenant = claim(&rules.claim)
            .or_else(|| rules.from_sub.then(|| claim("sub")).flatten())
            .ok_or_else(|| {
                Denied::Forbidden(format!("the token has no `{}` claim", rules.claim))
            })?;
        check_tenant(&tenant)?;
        let scopes: Vec<Scope> = jwt
            .scopes
            .iter()
            .flatten()
            .filter_map(|s| s.parse().ok())
            .collect();
        if scopes.is_empty() {
            return Err(Denied::Forbidden(
                "the token carries no flowgate scope (flowgate/start, flowgate/dlq, flowgate/admin)"
                    .into(),
            ));
        }
        return Ok(Caller {
            limit_key: tenant.clone(),
            tenant,
            scopes,
            rate: None,
        });
    }
    if let Some(iam) = &authorizer.iam {
        let tenant = match rules.iam {
            IamTenant::Principal => iam.user_arn.as_deref().and_then(stable_principal),
            IamTenant::Account => iam.account_id.clone().filter(|a| !a.is_empty()),
        }
        .ok_or_else(|| Denied::Forbidden("the IAM caller names no stable principal".into()))?;
        check_tenant(&tenant)?;
        return Ok(Caller::all_scopes(&tenant));
    }
    Err(Denied::Unauthenticated(
        "the authorizer context names no caller".into(),
    ))
}

/// The router with each request's caller (or why there is none) in its extensions.
pub fn app(flowgate: Flowgate, rules: TenantRules) -> Router {
    router(flowgate).layer(
        ServiceBuilder::new().map_request(move |mut request: Request<Body>| {
            match caller_of(&request, &rules) {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                }
                Err(denied) => {
                    request.extensions_mut().insert(Denial(denied));
                }
            }
            request
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::stable_principal;

    #[test]
    fn a_session_name_never_reaches_the_tenant() {
        assert_eq!(
            stable_principal("arn:aws:sts::123456789012:assumed-role/Ops/alice-picked-this"),
            Some("arn:aws:iam::123456789012:role/Ops".into())
        );
        assert_eq!(
            stable_principal("arn:aws:iam::123456789012:user/ops"),
            Some("arn:aws:iam::123456789012:user/ops".into())
        );
        assert_eq!(stable_principal("not-an-arn"), None);
    }
}
