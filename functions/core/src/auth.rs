//! Who is calling, and what they may do. A host authenticates each request (tokens on the
//! embedded host, the gateway's authorizer on the cloud host) and puts a [`Caller`] in its
//! extensions; the router refuses a request without one (401), and each route demands a
//! [`Scope`] (403 without it). Nothing falls back to a shared tenant.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Start instances and read requests, instances and workflows.
    Start,
    /// List, replay, archive and restore dead letters.
    Dlq,
    /// Register workflows (and, later, schedules); manage tokens.
    Admin,
    /// Read the process-wide metrics (`/metrics`), which name every tenant's workflows.
    Metrics,
    /// Report the status of any of the tenant's instances (`POST /v1/instances/{id}/status`).
    Report,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 5] = [
        Scope::Start,
        Scope::Dlq,
        Scope::Admin,
        Scope::Metrics,
        Scope::Report,
    ];

    /// The spelling in tokens and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Start => "start",
            Scope::Dlq => "dlq",
            Scope::Admin => "admin",
            Scope::Metrics => "metrics",
            Scope::Report => "report",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let word = text.trim().trim_start_matches("flowgate/");
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == word)
            .ok_or_else(|| format!("{text:?} is not a scope (start, dlq, admin, metrics, report)"))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller: its tenant, its scopes, and its own rate limit, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant everything it does belongs to.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Requests per second it may make, overriding the host's per-tenant limit.
    pub rate: Option<u32>,
    /// What the rate limit counts against: the tenant, or the caller's own token.
    pub limit_key: String,
}

impl Caller {
    /// A caller of `tenant` with every scope and the tenant's limit.
    pub fn all_scopes(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            scopes: Scope::ALL.to_vec(),
            rate: None,
            limit_key: tenant.to_owned(),
        }
    }

    /// Whether it may act in `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credentials, or credentials that name no one (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Credentials that do not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The credentials could not be checked (503).
    #[error("{0}")]
    Unavailable(String),
    /// Over the rate limit (429); retry after this many seconds.
    #[error("over the rate limit of {limit} requests per second")]
    RateLimited {
        /// The limit.
        limit: u32,
        /// Seconds until a request is allowed again.
        retry_after: u64,
    },
}

/// Checks a tenant name: 1 to 256 characters of letters, digits and `_ . - : / @ + = ,`. A
/// `#` (the storage keys' separator) or anything else is refused.
pub fn check_tenant(tenant: &str) -> Result<(), Denied> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:/@+=,".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "the credentials name a tenant with characters outside A-Z a-z 0-9 _ . - : / @ + = ,"
                .into(),
        ))
    }
}

/// Per-key token buckets: each key may make `rate` requests a second, in bursts of up to one
/// second's worth.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one request of `key` at `rate` per second; `Err` with the seconds to wait.
    pub fn take(&self, key: &str, rate: u32) -> Result<(), u64> {
        if rate == 0 {
            return Ok(());
        }
        let rate = f64::from(rate);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_with_or_without_their_prefix() {
        assert_eq!("flowgate/dlq".parse::<Scope>(), Ok(Scope::Dlq));
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn tenants_with_a_separator_are_refused() {
        assert!(check_tenant("urn:corp:iam::123456789012:role/ops").is_ok());
        assert!(check_tenant("acme").is_ok());
        for bad in ["", "a#b", "a b", "é", "x\n"] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bucket_allows_its_rate_then_asks_to_wait() {
        let limiter = RateLimiter::default();
        for _ in 0..5 {
            assert!(limiter.take("t", 5).is_ok());
        }
        assert_eq!(limiter.take("t", 5), Err(1));
        assert!(limiter.take("other", 5).is_ok(), "keys are apart");
        assert!(limiter.take("t", 0).is_ok(), "0 means no limit");
    }
}
