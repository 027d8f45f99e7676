//! Trace context across hops: which trace the code running now belongs to, what an
//! outgoing message carries, and what an incoming one continues.
//!
//! Every RPC request, event and command sent by this SDK carries a W3C `traceparent`
//! header, and its envelope's `trace_id` names the same trace (the mapping is in
//! [`crate::domain::trace`]). A handler runs inside the trace of the message it handles:
//! RPC calls, events and commands it sends through any [`Client`](super::Client)
//! continue that trace, so a chain A calls B, B publishes an event, C handles it shares
//! one trace id end to end.
//!
//! The current trace is a tokio task-local: it follows the handler's future, not the
//! thread. Work a handler spawns onto another task starts a new trace unless it is
//! wrapped in [`in_trace`] with [`current`]. A message received without any trace
//! context (neither header nor a usable envelope `trace_id`) starts a new trace.
//!
//! With the `otel` feature, an OpenTelemetry span entered around outgoing work wins:
//! its trace and span id go into the header, so exported spans nest across processes.

use std::future::{Future, IntoFuture};

use tracing::Instrument;

use crate::domain::envelope;
use crate::domain::trace::{TraceContext, TRACEPARENT};
use crate::ports::Headers;

tokio::task_local! {
    static CURRENT: Option<TraceContext>;
}

/// The trace of the handler running in this task, if any.
///
/// # Examples
/// ```
/// use aegis_sdk::application::propagation::{current, in_trace};
/// use aegis_sdk::domain::trace::TraceContext;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(current().is_none());
/// let trace = TraceContext::new_root();
/// in_trace(trace, async move {
///     assert_eq!(current(), Some(trace));
/// })
/// .await;
/// # }
/// ```
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|current| *current).ok().flatten()
}

/// Runs `work` (a future, or a [`Call`](super::Call) and the like) in `trace`: messages
/// it sends continue that trace.
pub async fn in_trace<F: IntoFuture>(trace: TraceContext, work: F) -> F::Output {
    CURRENT.scope(Some(trace), work.into_future()).await
}

/// Runs `work` under `span`, continuing the trace of the remote `parent` (the sender's
/// span, as [`incoming`] found it): the span gets the trace id (and, with `otel`, the
/// OpenTelemetry parent), and messages `work` sends continue the trace.
pub(crate) async fn continue_trace<F: Future>(
    parent: Option<TraceContext>,
    span: tracing::Span,
    work: F,
) -> F::Output {
    if let Some(parent) = &parent {
        if !span.is_disabled() {
            span.record("trace_id", parent.envelope_trace_id());
        }
        #[cfg(feature = "otel")]
        crate::adapters::otel::set_parent(&span, parent);
    }
    CURRENT
        .scope(parent.map(|parent| parent.child()), work)
        .instrument(span)
        .await
}

/// The context for a message about to be sent: a new span in the current trace, or a
/// new trace.
pub(crate) fn outgoing() -> TraceContext {
    #[cfg(feature = "otel")]
    if let Some(context) = crate::adapters::otel::current_span_context() {
        return context;
    }
    match current() {
        Some(trace) => trace.child(),
        None => TraceContext::new_root(),
    }
}

/// The envelope `trace_id` of the message being handled, made to agree with the trace
/// it continues: unchanged when it names the current trace (or there is none), else
/// the current trace's UUID form (the `traceparent` header won).
pub(crate) fn agreeing_trace_id(trace_id: String) -> String {
    match current() {
        Some(trace) if !trace.matches_envelope_trace_id(&trace_id) => trace.envelope_trace_id(),
        _ => trace_id,
    }
}

/// The context for a message whose envelope names trace `trace_id`: the next span of
/// the current trace if that is the one, else a new span in the named trace; `None`
/// when the text names no trace (no header is sent then).
pub(crate) fn for_envelope(trace_id: &str) -> Option<TraceContext> {
    let next = outgoing();
    if next.matches_envelope_trace_id(trace_id) {
        return Some(next);
    }
    TraceContext::from_envelope_trace_id(trace_id)
}

/// Adds the `traceparent` header of `trace` to `headers`.
pub(crate) fn inject(headers: &mut Headers, trace: &TraceContext) {
    headers.insert(TRACEPARENT, trace.traceparent());
}

/// The remote parent of an incoming message: the `traceparent` header when valid, else
/// the trace named by the envelope's `trace_id` (looked up in `payload` only then).
pub(crate) fn incoming(headers: &Headers, payload: &[u8]) -> Option<TraceContext> {
    from_header(headers).or_else(|| {
        let (_, trace_id) = envelope::peek_ids(payload)?;
        TraceContext::from_envelope_trace_id(&trace_id?)
    })
}

/// The trace of a message whose envelope was already decoded.
pub(crate) fn incoming_decoded(headers: &Headers, trace_id: &str) -> Option<TraceContext> {
    from_header(headers).or_else(|| TraceContext::from_envelope_trace_id(trace_id))
}

fn from_header(headers: &Headers) -> Option<TraceContext> {
    headers
        .get(TRACEPARENT)
        .and_then(TraceContext::parse_traceparent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outgoing_continues_the_current_trace() {
        let root = outgoing();
        let next = in_trace(root, async { outgoing() }).await;
        assert_eq!(next.trace_id(), root.trace_id());
        assert_ne!(next.span_id(), root.span_id());
        assert_ne!(outgoing().trace_id(), root.trace_id());

        let mut headers = Headers::new();
        inject(&mut headers, &next);
        let received = incoming(&headers, b"").unwrap();
        assert_eq!(received.trace_id(), root.trace_id());

        let envelope = root.envelope_trace_id();
        let from_envelope = incoming_decoded(&Headers::new(), &envelope).unwrap();
        assert_eq!(from_envelope.trace_id(), root.trace_id());
    }
}
