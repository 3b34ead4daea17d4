//! Callback tokens: each hand-off carries a URL and a token that lets its target report on
//! that one instance, and nothing else. A token is an HMAC-SHA256 of the tenant and the
//! instance id under the host's callback key, so nothing is stored per instance.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The prefix of every callback token (its format's version).
const PREFIX: &str = "fgcb1.";

/// Where and how a target reports on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// `POST` a status here.
    pub url: String,
    /// Send it as `Authorization: Bearer <token>`; good for this instance only.
    pub token: String,
}

/// Mints and checks callback tokens under one key, for one public base URL.
#[derive(Clone)]
pub struct Callbacks {
    key: Vec<u8>,
    base_url: String,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Callbacks {
    /// Callbacks signed with `secret` (at least 32 bytes), reported to `base_url`.
    pub fn new(secret: &str, base_url: &str) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("a callback key is at least 32 characters".into());
        }
        Ok(Self {
            key: secret.as_bytes().to_vec(),
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn mac(&self, tenant: &str, instance_id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|e| unreachable!("HMAC takes a key of any length: {e}"));
        mac.update(tenant.as_bytes());
        mac.update(&[0]);
        mac.update(instance_id.as_bytes());
        mac
    }

    /// The callback of one instance.
    pub fn of(&self, tenant: &str, instance_id: &str) -> Callback {
        let tag = self.mac(tenant, instance_id).finalize().into_bytes();
        Callback {
            url: format!("{}/v1/instances/{instance_id}/status", self.base_url),
            token: format!(
                "{PREFIX}{}.{}",
                URL_SAFE_NO_PAD.encode(tenant),
                URL_SAFE_NO_PAD.encode(tag)
            ),
        }
    }

    /// The callbacks a host's settings describe: `None` until both the key and the public
    /// URL are set (a hand-off then carries no callback).
    pub fn from_settings(settings: &flowgate_settings::Settings) -> Option<Self> {
        if settings.callback_secret.is_empty() || settings.public_url.is_empty() {
            return None;
        }
        Self::new(&settings.callback_secret, &settings.public_url).ok()
    }

    /// The tenant a token speaks for, if it is `instance_id`'s own token.
    pub fn verify(&self, token: &str, instance_id: &str) -> Option<String> {
        let (tenant, tag) = token.strip_prefix(PREFIX)?.split_once('.')?;
        let tenant = String::from_utf8(URL_SAFE_NO_PAD.decode(tenant).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(&tenant, instance_id)
            .verify_slice(&tag)
            .ok()
            .map(|()| tenant)
    }

    /// Whether `token` has the form of a callback token (and so is not an API token).
    pub fn looks_like(token: &str) -> bool {
        token.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_own_instance_only() {
        let callbacks = Callbacks::new(&"k".repeat(32), "https://api.example/").expect("a key");
        let cb = callbacks.of("acme", "i-1");
        assert_eq!(cb.url, "https://api.example/v1/instances/i-1/status");
        assert_eq!(callbacks.verify(&cb.token, "i-1").as_deref(), Some("acme"));
        assert_eq!(callbacks.verify(&cb.token, "i-2"), None);
        let other = Callbacks::new(&"j".repeat(32), "https://api.example").expect("a key");
        assert_eq!(other.verify(&cb.token, "i-1"), None);
        // Another tenant's name in a token with this tag does not verify.
        let forged = cb.token.replace(
            &URL_SAFE_NO_PAD.encode("acme"),
            &URL_SAFE_NO_PAD.encode("beta"),
        );
        assert_eq!(callbacks.verify(&forged, "i-1"), None);
        assert!(Callbacks::new("short", "x").is_err());
    }
}
