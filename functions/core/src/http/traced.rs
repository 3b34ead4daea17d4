//! The trace each API request runs in: the caller's W3C `traceparent` continued (or a new
//! trace), put on the request for the handlers, and on a span so every log line of the
//! request names its trace id.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::trace::{self, TRACEPARENT, TraceContext};

/// Continues the caller's trace, or starts one, for the rest of the request.
pub async fn traced(mut request: Request, next: Next) -> Response {
    let parent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let trace = match &parent {
        Some(parent) => parent.child(),
        None => TraceContext::root(),
    };
    // ERROR level, as the use cases' spans: enabled, with its field, whatever the filter.
    let span = tracing::error_span!("http", trace_id = %trace.trace_id());
    // Where spans are exported, this one is the caller's child (or starts the trace), and
    // its own context is what the request carries on.
    trace::join(&span, parent.as_ref().unwrap_or(&trace));
    let trace = trace::hand_on(&span, trace);
    request.extensions_mut().insert(trace);
    next.run(request).instrument(span).await
}
