//! API tokens: made once and shown once, stored hashed, checked on every request. A token
//! names its tenant and its scopes; the host accepts a request only with one, once any
//! token exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::auth::{Caller, Denied, Scope, check_tenant};
use crate::error::{BackendError, Error};
use crate::ports::{TokenRecord, Tokens};

/// How long a checked token (and the answer to "do tokens exist") is trusted before the
/// store is asked again: a revocation takes effect within this.
pub const TOKEN_CACHE: Duration = Duration::from_secs(2);

/// The prefix of every token, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "fgt_";

/// A token just made: the secret (shown once) and what is stored of it.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token, to hand to the client. It is never stored.
    pub secret: String,
    /// What is stored.
    pub record: TokenRecord,
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes a token for `tenant` with `scopes` and an optional rate of its own.
pub async fn create(
    store: &dyn Tokens,
    tenant: &str,
    scopes: &[Scope],
    rate: Option<u32>,
) -> Result<NewToken, Error> {
    check_tenant(tenant).map_err(|e| Error::invalid("tenant", e.to_string()))?;
    if scopes.is_empty() {
        return Err(Error::invalid("scope", "name at least one scope"));
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let secret = format!(
        "{TOKEN_PREFIX}{id}_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut scopes = scopes.to_vec();
    scopes.sort_by_key(|s| s.as_str());
    scopes.dedup();
    let record = TokenRecord {
        id,
        hash: hash(&secret),
        tenant: tenant.to_owned(),
        scopes,
        rate,
        created_at: Utc::now(),
        revoked_at: None,
    };
    store.put_token(&record).await?;
    Ok(NewToken { secret, record })
}

/// Whether requests without a token are served, and as whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Never: every request needs a token.
    Never,
    /// While no token exists: requests without one act as the `default` tenant.
    UntilATokenExists,
}

/// Checks the credentials of each request against the token store, with a short cache.
pub struct TokenAuth {
    store: Arc<dyn Tokens>,
    open: Open,
    seen: Mutex<HashMap<String, (Option<TokenRecord>, Instant)>>,
    exist: Mutex<Option<(bool, Instant)>>,
}

impl TokenAuth {
    /// Authentication against `store`; `open` says what a request without a token gets.
    pub fn new(store: Arc<dyn Tokens>, open: Open) -> Self {
        Self {
            store,
            open,
            seen: Mutex::default(),
            exist: Mutex::default(),
        }
    }

    /// The caller a request's token (if any) makes.
    pub async fn caller(&self, token: Option<&str>) -> Result<Caller, Denied> {
        let Some(token) = token else {
            return self.anonymous().await;
        };
        let record = self.lookup(token).await?;
        match record {
            Some(r) if r.revoked_at.is_none() => Ok(Caller {
                limit_key: if r.rate.is_some() {
                    format!("token:{}", r.id)
                } else {
                    r.tenant.clone()
                },
                tenant: r.tenant,
                scopes: r.scopes,
                rate: r.rate,
            }),
            Some(_) => Err(Denied::Unauthenticated("the token was revoked".into())),
            None => Err(Denied::Unauthenticated("the token is not valid".into())),
        }
    }

    async fn anonymous(&self) -> Result<Caller, Denied> {
        if self.open == Open::UntilATokenExists && !self.tokens_exist().await? {
            return Ok(Caller::all_scopes(crate::model::DEFAULT_TENANT));
        }
        Err(Denied::Unauthenticated(
            "a token is required: send `Authorization: Bearer <token>`".into(),
        ))
    }

    async fn lookup(&self, token: &str) -> Result<Option<TokenRecord>, Denied> {
        let key = hash(token);
        if let Some((record, at)) = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < TOKEN_CACHE
        {
            return Ok(record.clone());
        }
        let record = self.store.token_by_hash(&key).await.map_err(unavailable)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a flood of made-up tokens cannot grow the cache without limit.
        if seen.len() > 10_000 {
            seen.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE);
            if seen.len() > 10_000 {
                seen.clear();
            }
        }
        seen.insert(key, (record.clone(), Instant::now()));
        Ok(record)
    }

    async fn tokens_exist(&self) -> Result<bool, Denied> {
        if let Some((exist, at)) = *self.exist.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < TOKEN_CACHE
        {
            return Ok(exist);
        }
        let exist = !self
            .store
            .list_tokens()
            .await
            .map_err(unavailable)?
            .is_empty();
        *self.exist.lock().unwrap_or_else(|p| p.into_inner()) = Some((exist, Instant::now()));
        Ok(exist)
    }
}

fn unavailable(e: BackendError) -> Denied {
    Denied::Unavailable(format!("the token store is unavailable ({})", e.chain()))
}
