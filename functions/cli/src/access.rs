//! Who may call `flowgate serve`: tokens whenever the embedded store keeps any or the server
//! listens beyond loopback; an open `default` tenant only on loopback with no token yet (or
//! when `--insecure-no-auth` says so out loud).

use std::sync::Arc;

use axum::Router;
use tracing::{info, warn};

use flowgate_core::auth::Caller;
use flowgate_core::http::{with_rate_limit, with_tokens};
use flowgate_core::ports::Tokens;
use flowgate_core::usecases::tokens::{Open, TokenAuth};
use flowgate_settings::Settings;

/// Why `serve` refuses to start as configured.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Beyond loopback with nothing to authenticate against.
    #[error(
        "{listen} is not a loopback address, and no API token exists: create one with \
         `flowgate tokens create --tenant <name> --data-dir {data_dir}`, or pass \
         --insecure-no-auth to serve everyone as tenant `default`"
    )]
    NeedsTokens {
        /// The listen address.
        listen: std::net::SocketAddr,
        /// The data directory, for the command in the message.
        data_dir: String,
    },
    /// The token store could not be read.
    #[error("cannot read the API tokens: {0}")]
    Store(String),
}

/// The router behind the access rules these settings and this token store call for.
pub async fn guard(
    router: Router,
    settings: &Settings,
    tokens: Option<Arc<dyn Tokens>>,
) -> Result<Router, AccessError> {
    let loopback = settings.listen.ip().is_loopback();
    let open_allowed = loopback || settings.insecure_no_auth;
    let router = with_rate_limit(router, settings.rate_limit);
    let any = match &tokens {
        Some(store) => !store
            .list_tokens()
            .await
            .map_err(|e| AccessError::Store(e.chain()))?
            .is_empty(),
        None => false,
    };
    if !open_allowed && !any {
        return Err(AccessError::NeedsTokens {
            listen: settings.listen,
            data_dir: settings.data_dir.display().to_string(),
        });
    }
    announce(settings, loopback, any);
    Ok(match tokens {
        Some(store) => {
            let open = if open_allowed {
                Open::UntilATokenExists
            } else {
                Open::Never
            };
            with_tokens(router, Arc::new(TokenAuth::new(store, open)))
        }
        // A backend without a token store: everyone is `default` (loopback or insecure only).
        None => router.layer(axum::Extension(Caller::all_scopes(
            flowgate_core::model::DEFAULT_TENANT,
        ))),
    })
}

fn announce(settings: &Settings, loopback: bool, any: bool) {
    if any {
        info!("API tokens exist: every request needs `Authorization: Bearer <token>`");
    } else if loopback {
        warn!(
            "no API token exists: requests without one act as tenant `default` with every \
             scope, on loopback only, until `flowgate tokens create` makes the first"
        );
    } else {
        warn!(
            listen = %settings.listen,
            "--insecure-no-auth: anyone who reaches this address acts as tenant `default` \
             with every scope, until `flowgate tokens create` makes the first token"
        );
    }
}
