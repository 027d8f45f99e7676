//! OpenTelemetry (feature `otel`): the SDK's spans join the W3C traces its messages
//! carry, so a tracer exports one trace across every process of a call chain.
//!
//! Install a [`tracing_opentelemetry`] layer with the tracer of your exporter (OTLP,
//! stdout, ...) next to your other `tracing` layers. Then:
//!
//! - each handler span (`aegis.rpc.handle`, `aegis.event.handle`,
//!   `aegis.command.handle`) has the sender's span as its remote parent, taken from the
//!   message's `traceparent` header;
//! - each message sent while an OpenTelemetry span is current carries that span in its
//!   `traceparent`, so the receiver's span nests under it.
//!
//! Without a layer installed, nothing changes: the trace ids still travel (see
//! [`propagation`](crate::application::propagation)).
//!
//! ```ignore
//! use tracing_subscriber::prelude::*;
//! let tracer = my_tracer_provider.tracer("orders");
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::EnvFilter::from_default_env())
//!     .with(aegis_sdk::adapters::otel::tracing_opentelemetry::layer().with_tracer(tracer))
//!     .init();
//! ```

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::domain::trace::TraceContext;

/// The OpenTelemetry crates this feature is built against, so that a program uses the
/// same versions.
pub use {opentelemetry, tracing_opentelemetry};

/// The current OpenTelemetry span as a trace context, when one is recorded.
pub(crate) fn current_span_context() -> Option<TraceContext> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    TraceContext::from_parts(
        span_context.trace_id().to_bytes(),
        span_context.span_id().to_bytes(),
        span_context.is_sampled(),
    )
}

/// Makes the remote span `parent` the OpenTelemetry parent of `span`.
pub(crate) fn set_parent(span: &tracing::Span, parent: &TraceContext) {
    let flags = if parent.is_sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.span_id()),
        flags,
        true,
        TraceState::default(),
    );
    let context = opentelemetry::Context::new().with_remote_span_context(remote);
    if let Err(error) = span.set_parent(context) {
        tracing::trace!(?error, "span has no OpenTelemetry data");
    }
}
