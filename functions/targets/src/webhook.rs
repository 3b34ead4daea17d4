//! The webhook target: a signed POST of the instance, with the instance id as its
//! idempotency key. Names are resolved once, by a resolver that refuses non-public
//! addresses (unless allowed), and the connection goes to the addresses it checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use flowgate_core::model::Instance;
use flowgate_core::ports::{DispatchError, Receipt};
use flowgate_core::trace::{TRACEPARENT, TraceContext};

use crate::guard::forbidden;
use crate::signature;

/// A webhook target as a workflow names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Where the POST goes: http or https.
    pub url: String,
    /// The longest one attempt may take, as `"10s"` or a number of seconds.
    #[serde(default)]
    pub timeout: Option<serde_json::Value>,
    /// The HMAC key of the signature; with none, no signature is sent.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The default, and the bounds, of one attempt's timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
// At most 20 s: one attempt fits well within the consumer function's 30 s timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(20);
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// How much of a failed answer's body is kept as its reason.
const REASON_BODY: usize = 200;

impl WebhookTarget {
    /// Checks the target; answers it with its timeout spelt out.
    pub fn check(mut self, allow_private: bool) -> Result<Self, String> {
        let url = Url::parse(&self.url).map_err(|e| format!("url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url scheme {} is not http or https", url.scheme()));
        }
        if self.url.chars().count() > 2048 {
            return Err("url is longer than 2048 characters".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url must not carry credentials; use the secret".into());
        }
        if !allow_private {
            check_host(&url)?;
        }
        let timeout = self.timeout()?;
        self.timeout = Some(serde_json::Value::String(
            humantime::format_duration(timeout).to_string(),
        ));
        if let Some(secret) = &self.secret
            && (secret.is_empty()
                || secret.chars().count() > 512
                || secret.chars().any(char::is_control))
        {
            return Err("secret must be 1 to 512 characters, none of them control".into());
        }
        Ok(self)
    }

    fn timeout(&self) -> Result<Duration, String> {
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(serde_json::Value::String(text)) => humantime::parse_duration(text)
                .map_err(|e| format!("timeout {text:?} is not a duration: {e}"))?,
            Some(serde_json::Value::Number(n)) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or("timeout must be a positive number of seconds")?,
            Some(_) => return Err("timeout must be a duration such as \"10s\"".into()),
        };
        if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
            return Err("timeout must be between 100ms and 20s".into());
        }
        Ok(timeout)
    }
}

/// Refuses a URL whose host is a non-public address, or a name that means this machine.
fn check_host(url: &Url) -> Result<(), String> {
    let refuse = |what: &str, why: &str| {
        Err(format!(
            "url host {what} is {why}; such targets are refused unless the server allows \
             them (--allow-private-targets, FLOWGATE_ALLOW_PRIVATE_TARGETS=true)"
        ))
    };
    match url.host() {
        None => Err("url has no host".into()),
        Some(url::Host::Ipv4(ip)) => match forbidden(IpAddr::V4(ip)) {
            Some(why) => refuse(&ip.to_string(), why),
            None => Ok(()),
        },
        Some(url::Host::Ipv6(ip)) => match forbidden(IpAddr::V6(ip)) {
            Some(why) => refuse(&ip.to_string(), why),
            None => Ok(()),
        },
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                refuse(&name, "this machine")
            } else {
                Ok(())
            }
        }
    }
}

/// Resolves a name once and answers only public addresses (or every address, when private
/// targets are allowed): the connection is made to what was checked, so a name cannot
/// pass the check and then resolve elsewhere.
struct GuardedResolver {
    allow_private: bool,
}

/// A name that resolves to an address the guard refuses.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to {ip}, which is {why}; refused (see --allow-private-targets)")]
struct Refused {
    name: String,
    ip: IpAddr,
    why: &'static str,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private
                && let Some((ip, why)) = addrs
                    .iter()
                    .find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why)))
            {
                return Err(Box::new(Refused {
                    name: host,
                    ip,
                    why,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of every webhook: no redirects (a redirect could lead past the guard),
/// no proxy, the guarded resolver.
pub struct Webhooks {
    client: reqwest::Client,
    allow_private: bool,
}

impl Webhooks {
    /// The client; private targets are reached only when `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("flowgate/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .expect("the webhook client builds");
        Self {
            client,
            allow_private,
        }
    }

    /// Hands `instance` to `target`: a signed POST of the instance, keyed by its id.
    pub async fn send(
        &self,
        target: &WebhookTarget,
        instance: &Instance,
        trace: Option<&TraceContext>,
    ) -> Result<Receipt, DispatchError> {
        let body =
            serde_json::to_vec(instance).map_err(|e| DispatchError::permanent(e.to_string()))?;
        self.post(target, body, &instance.instance_id, trace).await
    }

    /// Tells `target` that `instance` is cancelled: a signed POST of
    /// `{"event": "cancel", ...}` to the same URL, keyed by `cancel:` and the instance id.
    pub async fn cancel(
        &self,
        target: &WebhookTarget,
        instance: &Instance,
    ) -> Result<Receipt, DispatchError> {
        let notice = serde_json::json!({
            "event": "cancel",
            "tenant": instance.tenant,
            "workflow": instance.workflow,
            "instance_id": instance.instance_id,
            "request_id": instance.request_id,
            "cancelled_at": chrono::Utc::now(),
        });
        let body = notice.to_string().into_bytes();
        let key = format!("cancel:{}", instance.instance_id);
        self.post(target, body, &key, None).await
    }

    /// One signed POST of `body` to the target's URL, under the guard.
    async fn post(
        &self,
        target: &WebhookTarget,
        body: Vec<u8>,
        idempotency_key: &str,
        trace: Option<&TraceContext>,
    ) -> Result<Receipt, DispatchError> {
        let timeout = target.timeout().map_err(DispatchError::permanent)?;
        let url = Url::parse(&target.url).map_err(|e| DispatchError::permanent(e.to_string()))?;
        if !self.allow_private {
            // An address in the URL is never resolved, so it is checked here.
            check_host(&url).map_err(DispatchError::permanent)?;
        }
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key);
        if let Some(trace) = trace {
            request = request.header(TRACEPARENT, trace.to_string());
        }
        if let Some(secret) = &target.secret {
            let now = chrono::Utc::now().timestamp();
            request = request.header(
                signature::HEADER,
                signature::sign(secret.as_bytes(), now, &body),
            );
        }
        let answer = request
            .body(body)
            .send()
            .await
            .map_err(|e| failed(&e, timeout))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(Receipt {
                reference: format!("HTTP {}", status.as_u16()),
            });
        }
        let text = answer.text().await.unwrap_or_default();
        let reason = format!("HTTP {}: {}", status.as_u16(), excerpt(&text));
        Err(if retryable(status) {
            DispatchError::retryable(reason)
        } else {
            DispatchError::permanent(reason)
        })
    }
}

/// 408, 409, 425, 429 and 5xx may pass later; any other answer will not.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 425 | 429) || status.is_server_error()
}

/// A failed send: the guard's refusal is permanent; a timeout or a connection error is not.
fn failed(err: &reqwest::Error, timeout: Duration) -> DispatchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return DispatchError::permanent(refused.to_string());
        }
        source = e.source();
    }
    if err.is_timeout() {
        return DispatchError::retryable(format!(
            "no answer within the timeout of {}",
            humantime::format_duration(timeout)
        ));
    }
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        reason = format!("{reason}: {e}");
        source = e.source();
    }
    DispatchError::retryable(reason)
}

/// The start of a body, on one line, at a character boundary.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(REASON_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> WebhookTarget {
        WebhookTarget {
            url: url.into(),
            timeout: None,
            secret: None,
        }
    }

    #[test]
    fn only_public_http_urls_pass_unless_private_ones_are_allowed() {
        for url in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "https://192.168.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:10.0.0.1]/",
            "http://localhost/",
            "http://api.localhost./",
        ] {
            let err = target(url).check(false).expect_err(url);
            assert!(err.contains("--allow-private-targets"), "{url}: {err}");
            target(url).check(true).expect(url);
        }
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
            "http://u:p@example.com/",
        ] {
            assert!(target(url).check(true).is_err(), "{url}");
        }
        let checked = target("https://hooks.example.com/flowgate")
            .check(false)
            .expect("public");
        assert_eq!(checked.timeout, Some(serde_json::json!("10s")));
    }

    #[test]
    fn timeouts_and_secrets_are_bounded() {
        let with = |timeout: serde_json::Value, secret: Option<&str>| WebhookTarget {
            url: "https://example.com/".into(),
            timeout: Some(timeout),
            secret: secret.map(str::to_owned),
        };
        assert!(
            with(serde_json::json!("2s"), Some("k"))
                .check(false)
                .is_ok()
        );
        assert!(with(serde_json::json!(1.5), None).check(false).is_ok());
        for bad in [
            serde_json::json!("0s"),
            serde_json::json!("21s"),
            serde_json::json!(-1),
            serde_json::json!("soon"),
            serde_json::json!(true),
        ] {
            assert!(with(bad.clone(), None).check(false).is_err(), "{bad}");
        }
        assert!(
            with(serde_json::json!("2s"), Some(""))
                .check(false)
                .is_err()
        );
        assert!(
            with(serde_json::json!("2s"), Some("a\nb"))
                .check(false)
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_a_private_address() {
        let name: Name = "localhost".parse().expect("name");
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve(name)
        .await;
        let err = refused.err().expect("refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        let name: Name = "localhost".parse().expect("name");
        let allowed = GuardedResolver {
            allow_private: true,
        }
        .resolve(name)
        .await;
        assert!(allowed.expect("resolved").next().is_some());
    }

    /// The whole send, through the guarded resolver: this machine's own name resolves to a
    /// loopback or private address (in /etc/hosts), so a webhook naming it is refused as
    /// permanent, and nothing is sent.
    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused_at_hand_off() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        let host = host.trim();
        let addrs: Vec<_> = tokio::net::lookup_host((host, 80))
            .await
            .expect("resolves")
            .collect();
        assert!(
            addrs.iter().all(|a| forbidden(a.ip()).is_some()),
            "this machine's name {host} resolves to a public address: {addrs:?}"
        );
        let target = target(&format!("http://{host}:9/hook"));
        let instance: Instance = serde_json::from_value(serde_json::json!({
            "tenant": "t", "instance_id": "i-1", "request_id": "r-1", "workflow": "w",
            "params": {}, "priority": "MEDIUM", "schedule_time": null, "status": "CREATED",
            "created_at": "2026-11-30T00:00:00Z"
        }))
        .expect("an instance");
        let err = Webhooks::new(false)
            .send(&target, &instance, None)
            .await
            .expect_err("refused");
        assert!(
            !err.retryable && err.reason.contains("resolves to"),
            "{err:?}"
        );
    }

    #[test]
    fn answers_are_read_as_the_contract_says() {
        for s in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).expect("status")), "{s}");
        }
        for s in [300, 301, 400, 401, 403, 404, 410, 422] {
            assert!(!retryable(StatusCode::from_u16(s).expect("status")), "{s}");
        }
    }
}
