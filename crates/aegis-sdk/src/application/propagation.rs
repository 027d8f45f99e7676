//! Trace context across hops: which trace the code running now belongs to, what an
//! outgoing message carries, and what an incoming one continues.
//!
//! Every RPC request, event and command sent by this SDK names its trace in the
//! envelope's `trace_id` (the mapping is in [`crate::domain::trace`]). When it is sent
//! from within a trace (a handler's, one entered with [`in_trace`], or, with `otel`, an
//! OpenTelemetry span), it also carries a W3C `traceparent` header naming that trace and
//! the sending span, so the receiver's span nests under the sender's. A message that
//! starts a new trace has no span to name: its envelope alone carries the new trace id
//! (a header would cost the transport more and tell the receiver nothing more). A
//! handler runs inside the trace of the message it handles:
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

use std::cell::Cell;
use std::future::{Future, IntoFuture};

use tracing::Instrument;

use crate::domain::envelope;
use crate::domain::trace::{TraceContext, TRACEPARENT};
use crate::ports::Headers;

tokio::task_local! {
    /// A cell, so that a handler whose request had no `traceparent` header can adopt
    /// the envelope's trace once it has decoded the request (see [`agreeing_trace_id`]).
    static CURRENT: Cell<Slot>;
}

/// What [`CURRENT`] holds.
#[derive(Clone, Copy)]
enum Slot {
    /// No trace.
    Empty,
    /// This trace.
    Trace(TraceContext),
    /// The trace an envelope's `trace_id` names, kept as text until it is asked for:
    /// most handlers never send anything, and reading the id costs more than keeping it.
    Envelope { text: [u8; ENVELOPE_TEXT], len: u8 },
}

/// The longest envelope `trace_id` kept unread in a [`Slot`]: a hyphenated UUID.
const ENVELOPE_TEXT: usize = 36;

impl Slot {
    fn of(trace: Option<TraceContext>) -> Slot {
        trace.map_or(Slot::Empty, Slot::Trace)
    }

    /// The envelope's trace, unread if it is short enough to keep, else read now.
    fn envelope(trace_id: &str) -> Slot {
        let bytes = trace_id.as_bytes();
        if bytes.len() > ENVELOPE_TEXT {
            return Slot::of(TraceContext::from_envelope_trace_id(trace_id));
        }
        let mut text = [0; ENVELOPE_TEXT];
        text[..bytes.len()].copy_from_slice(bytes);
        Slot::Envelope {
            text,
            len: bytes.len() as u8,
        }
    }

    /// The trace held, reading a kept envelope id (and keeping what it read).
    fn read(cell: &Cell<Slot>) -> Option<TraceContext> {
        match cell.get() {
            Slot::Empty => None,
            Slot::Trace(trace) => Some(trace),
            Slot::Envelope { text, len } => {
                let trace = std::str::from_utf8(&text[..usize::from(len)])
                    .ok()
                    .and_then(TraceContext::from_envelope_trace_id);
                cell.set(Slot::of(trace));
                trace
            }
        }
    }
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
    CURRENT.try_with(Slot::read).ok().flatten()
}

/// Runs `work` (a future, or a [`Call`](super::Call) and the like) in `trace`: messages
/// it sends continue that trace.
pub async fn in_trace<F: IntoFuture>(trace: TraceContext, work: F) -> F::Output {
    CURRENT
        .scope(Cell::new(Slot::Trace(trace)), work.into_future())
        .await
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
        .scope(
            Cell::new(Slot::of(parent.map(|parent| parent.child()))),
            work,
        )
        .instrument(span)
        .await
}

/// The context for a message about to be sent, and whether it continues a trace (then
/// the message carries a `traceparent` header; see the module docs).
pub(crate) fn outgoing() -> OutgoingTrace {
    match continuing() {
        Some(trace) => OutgoingTrace {
            trace,
            continued: true,
        },
        None => OutgoingTrace {
            trace: TraceContext::new_root(),
            continued: false,
        },
    }
}

/// The trace context of a message about to be sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutgoingTrace {
    /// A new span in the current trace, or a new trace.
    pub(crate) trace: TraceContext,
    /// Whether `trace` continues a trace rather than starting one.
    pub(crate) continued: bool,
}

impl OutgoingTrace {
    /// Adds the `traceparent` header when the message continues a trace.
    pub(crate) fn inject(&self, headers: &mut Headers) {
        if self.continued {
            inject(headers, &self.trace);
        }
    }
}

/// The next span of the trace the running code belongs to, if any: the current
/// OpenTelemetry span (with `otel`), else the handler's trace.
fn continuing() -> Option<TraceContext> {
    #[cfg(feature = "otel")]
    if let Some(context) = crate::adapters::otel::current_span_context() {
        return Some(context);
    }
    current().map(|trace| trace.child())
}

/// The envelope `trace_id` of the message being handled, made to agree with the trace
/// it continues: unchanged when it names the current trace, else the current trace's
/// UUID form (the `traceparent` header won). A handler whose request came without a
/// header (and whose trace was therefore left unset) adopts the envelope's trace here.
pub(crate) fn agreeing_trace_id(trace_id: String) -> String {
    let adopted = CURRENT.try_with(|current| match current.get() {
        Slot::Empty => {
            current.set(Slot::envelope(&trace_id));
            None
        }
        _ => Slot::read(current),
    });
    match adopted {
        Ok(Some(trace)) if !trace.matches_envelope_trace_id(&trace_id) => trace.envelope_trace_id(),
        _ => trace_id,
    }
}

/// The context for a message whose envelope names trace `trace_id`, when the message
/// continues a trace: the next span of the current trace if that is the one named.
/// `None` otherwise (no header is sent then; the envelope names the trace).
pub(crate) fn for_envelope(trace_id: &str) -> Option<TraceContext> {
    continuing().filter(|next| next.matches_envelope_trace_id(trace_id))
}

/// Adds the `traceparent` header of `trace` to `headers`.
pub(crate) fn inject(headers: &mut Headers, trace: &TraceContext) {
    headers.insert(TRACEPARENT, trace.traceparent());
}

/// The remote parent of an incoming message: the `traceparent` header when valid, else
/// the trace named by the envelope's `trace_id` (looked up in `payload` only then).
pub(crate) fn incoming(headers: &Headers, payload: &[u8]) -> Option<TraceContext> {
    from_header(headers).or_else(|| from_payload(payload))
}

/// As [`incoming`] for an RPC request, whose handler decodes the envelope anyway: without
/// a header, the envelope is read here only when `span` records the trace (or, with
/// `otel`, may be exported); otherwise the handler adopts the envelope's trace when it
/// decodes the request ([`agreeing_trace_id`]), and the envelope is decoded once.
pub(crate) fn incoming_request(
    headers: &Headers,
    payload: &[u8],
    span: &tracing::Span,
) -> Option<TraceContext> {
    from_header(headers).or_else(|| {
        let recorded = !span.is_disabled() || cfg!(feature = "otel");
        recorded.then(|| from_payload(payload)).flatten()
    })
}

/// The trace of a message whose envelope was already decoded.
pub(crate) fn incoming_decoded(headers: &Headers, trace_id: &str) -> Option<TraceContext> {
    from_header(headers).or_else(|| TraceContext::from_envelope_trace_id(trace_id))
}

fn from_header(headers: &Headers) -> Option<TraceContext> {
    if headers.is_empty() {
        return None;
    }
    headers
        .get(TRACEPARENT)
        .and_then(TraceContext::parse_traceparent)
}

/// The trace an envelope's `trace_id` names, looked up in `payload`.
fn from_payload(payload: &[u8]) -> Option<TraceContext> {
    let (_, trace_id) = envelope::peek_ids(payload)?;
    TraceContext::from_envelope_trace_id(&trace_id?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outgoing_continues_the_current_trace() {
        let root = outgoing();
        assert!(
            !root.continued,
            "no trace yet: a new one, sent without a header"
        );
        let mut headers = Headers::new();
        root.inject(&mut headers);
        assert!(headers.is_empty());
        let root = root.trace;
        let next = in_trace(root, async { outgoing() }).await;
        assert!(next.continued);
        let next = next.trace;
        assert_eq!(next.trace_id(), root.trace_id());
        assert_ne!(next.span_id(), root.span_id());
        assert_ne!(outgoing().trace.trace_id(), root.trace_id());

        let mut headers = Headers::new();
        inject(&mut headers, &next);
        let received = incoming(&headers, b"").unwrap();
        assert_eq!(received.trace_id(), root.trace_id());

        let envelope = root.envelope_trace_id();
        let from_envelope = incoming_decoded(&Headers::new(), &envelope).unwrap();
        assert_eq!(from_envelope.trace_id(), root.trace_id());
    }
}
