//! W3C Trace Context: the `traceparent` a request brings (or a new one), carried from the
//! API through the queue's message attribute to the consumer and on to the target.

use std::fmt;
use std::sync::OnceLock;

/// The header and the message attribute that carry a trace.
pub const TRACEPARENT: &str = "traceparent";

/// One span's place in a trace: `00-<trace id>-<span id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    flags: u8,
}

fn hex(bytes: usize, value: u128) -> String {
    format!("{value:0width$x}", width = bytes * 2)
}

fn lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn nonzero_random(bits: u32) -> u128 {
    loop {
        let value = fastrand::u128(..) >> (128 - bits);
        if value != 0 {
            return value;
        }
    }
}

impl TraceContext {
    /// The start of a new trace (sampled).
    pub fn root() -> Self {
        Self {
            trace_id: hex(16, nonzero_random(128)),
            span_id: hex(8, nonzero_random(64)),
            flags: 1,
        }
    }

    /// Parses a `traceparent` value as the W3C recommendation says: version `00` exactly as
    /// specified; a later version by its first four fields; anything else is no trace.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        let valid_version = lower_hex(version, 2) && version != "ff";
        if !valid_version || (version == "00" && (rest.is_some() || value.len() != 55)) {
            return None;
        }
        if !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) || !lower_hex(flags, 2) {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || span_id.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()? & 1,
        })
    }

    /// The context `value` names, or a new trace when it names none.
    pub fn continue_or_start(value: Option<&str>) -> Self {
        value
            .and_then(Self::parse)
            .map_or_else(Self::root, |parent| parent.child())
    }

    /// A new span in the trace `trace_id` (32 hex digits), whose parent is not known.
    pub fn resumed(trace_id: &str) -> Option<Self> {
        Self::from_parts(trace_id, &hex(8, nonzero_random(64)), true)
    }

    /// A new span of the same trace, whose parent is this one.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: hex(8, nonzero_random(64)),
            flags: self.flags,
        }
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The span id: 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }
}

/// How a host that exports spans ties them to the request traces (installed once, at start;
/// without one, the trace ids live in the logs and the histories only).
#[derive(Debug, Clone, Copy)]
pub struct Exporter {
    /// Makes `span` a child of `parent` in the exported trace.
    pub join: fn(&tracing::Span, &TraceContext),
    /// The exported context of `span`, to hand on (in a message, or to a target), so that
    /// what comes next is its child.
    pub context_of: fn(&tracing::Span) -> Option<TraceContext>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Installs the host's exporter; a second one is ignored.
pub fn install_exporter(exporter: Exporter) {
    let _ = EXPORTER.set(exporter);
}

/// Ties `span` to the trace `parent` names, where spans are exported.
pub fn join(span: &tracing::Span, parent: &TraceContext) {
    if let Some(e) = EXPORTER.get() {
        (e.join)(span, parent);
    }
}

/// The context to hand on from `span`: its exported context where spans are exported,
/// otherwise `fallback`.
pub fn hand_on(span: &tracing::Span, fallback: TraceContext) -> TraceContext {
    EXPORTER
        .get()
        .and_then(|e| (e.context_of)(span))
        .unwrap_or(fallback)
}

impl TraceContext {
    /// A context from its parts: the trace id (32 hex digits), the span id (16) and whether
    /// it is sampled; `None` when the ids are not valid.
    pub fn from_parts(trace_id: &str, span_id: &str, sampled: bool) -> Option<Self> {
        Self::parse(&format!("00-{trace_id}-{span_id}-0{}", u8::from(sampled)))
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_writes_the_recommendations_example() {
        let parsed = TraceContext::parse(EXAMPLE).expect("valid");
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.to_string(), EXAMPLE);
        let child = parsed.child();
        assert_eq!(child.trace_id(), parsed.trace_id());
        assert_ne!(child.to_string(), EXAMPLE, "a new span id");
        assert!(TraceContext::parse(&child.to_string()).is_some());
    }

    #[test]
    fn refuses_what_the_recommendation_refuses() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "not a trace",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(
            TraceContext::parse(later).is_some(),
            "a later version is read"
        );
    }

    #[test]
    fn a_missing_or_bad_parent_starts_a_trace() {
        let started = TraceContext::continue_or_start(Some("garbage"));
        assert!(TraceContext::parse(&started.to_string()).is_some());
        let continued = TraceContext::continue_or_start(Some(EXAMPLE));
        assert_eq!(continued.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
