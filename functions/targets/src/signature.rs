//! The webhook signature: `Flowgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the
//! HMAC keyed by the target's secret over `"<t>." + body`. A receiver recomputes it, compares
//! in constant time, and refuses a timestamp further than its tolerance from its own clock
//! (a replayed delivery). [`verify`] is that check.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "Flowgate-Signature";

/// The replay tolerance the docs recommend: five minutes either side.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    #[error("the signature header is malformed")]
    Malformed,
    /// The timestamp is outside the tolerance: a replay, or a skewed clock.
    #[error("the signature is {0} s away from now, past the tolerance")]
    Stale(i64),
    /// No `v1` matches the body and secret.
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a `Flowgate-Signature` header against `body` at `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = (now - timestamp).abs();
    if skew > tolerance_secs {
        return Err(SignatureError::Stale(skew));
    }
    let matches = candidates.iter().any(|hex| {
        decode_hex(hex)
            .is_some_and(|bytes| mac(secret, timestamp, body).verify_slice(&bytes).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_does_not() {
        let body = br#"{"instance_id":"i-1"}"#;
        let header = sign(b"s3cret", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(b"s3cret", &header, body, 1_700_000_010, 300), Ok(()));
        assert_eq!(
            verify(b"other", &header, body, 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, body, 1_700_000_400, 300),
            Err(SignatureError::Stale(400))
        );
        assert_eq!(
            verify(b"s3cret", "v1=00", body, 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_the_one_a_receiver_computes_in_another_language() {
        // Python: hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"s3cret", 1_700_000_000, br#"{"instance_id":"i-1"}"#),
            "t=1700000000,v1=5b35c7aaf418b81ecb05481da084068759d4152bc440dccd20a1bcbb40818fc6"
        );
    }
}
