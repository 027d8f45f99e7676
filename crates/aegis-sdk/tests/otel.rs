//! Feature `otel` on a real nats-server: the SDK's spans, exported through an
//! OpenTelemetry tracer, form one trace from the caller's root span through a call, its
//! handler, and a call that handler makes; each handler span's parent is the span of
//! the call it answers. Run with `cargo test -p aegis-sdk --features otel --test otel`.
#![cfg(feature = "otel")]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::adapters::otel::opentelemetry::trace::{SpanId, TracerProvider as _};
use aegis_sdk::adapters::otel::tracing_opentelemetry;
use aegis_sdk::domain::trace::TraceContext;
use aegis_sdk::{Client, ConnectOptions, HandlerError, RpcContext, Service};
use aegis_test_support::NatsServer;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The value of attribute `key` of `span`, as text.
fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The one exported span called `name` whose `service` attribute is `service`.
fn the_span<'a>(spans: &'a [SpanData], name: &str, service: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == name && attribute(s, "service").as_deref() == Some(service))
        .collect();
    assert_eq!(found.len(), 1, "{name} of {service}: {found:#?}");
    found[0]
}

#[tokio::test]
async fn a_call_chain_is_one_opentelemetry_trace() {
    // The only test in this binary: its tracer is the global subscriber.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("aegis-otel-test"))),
    )
    .expect("no other global subscriber in this test binary");

    let server = NatsServer::start();
    let client = Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect");
    // Each handler's envelope `trace_id`, by service.
    let seen: Arc<Mutex<Vec<(&'static str, String)>>> = Arc::default();
    let inner = Service::builder("otel-inner")
        .rpc("leaf", {
            let seen = seen.clone();
            move |ctx: RpcContext, _: Value| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(("otel-inner", ctx.trace_id().to_owned()));
                    Ok::<_, HandlerError>(json!({}))
                }
            }
        })
        .build()
        .unwrap();
    let outer = Service::builder("otel-outer")
        .rpc("mid", {
            let seen = seen.clone();
            move |ctx: RpcContext, _: Value| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(("otel-outer", ctx.trace_id().to_owned()));
                    let _: Value = ctx.client().call("otel-inner", "leaf", json!({})).await?;
                    Ok::<_, HandlerError>(json!({}))
                }
            }
        })
        .build()
        .unwrap();
    inner.start(&client).await.unwrap();
    outer.start(&client).await.unwrap();

    let root = tracing::info_span!("test.root");
    let _: Value = within(
        "the call",
        // The call's span is made when the call is awaited, so inside the root span.
        async { client.call("otel-outer", "mid", json!({})).await }.instrument(root.clone()),
    )
    .await
    .unwrap();
    drop(root);
    outer.stop().await.unwrap();
    inner.stop().await.unwrap();

    // Spans are exported as they end; a handler's may end just after its reply.
    let wanted = ["test.root", "aegis.rpc.call", "aegis.rpc.handle"];
    let spans = within("the exported spans", async {
        loop {
            provider.force_flush().expect("flush");
            let spans = exporter.get_finished_spans().expect("spans");
            let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
            if count("test.root") == 1
                && count("aegis.rpc.call") == 2
                && count("aegis.rpc.handle") == 2
            {
                break spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let root = spans.iter().find(|s| s.name == "test.root").unwrap();
    let trace_id = root.span_context.trace_id();
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    let chain: Vec<&SpanData> = spans
        .iter()
        .filter(|s| wanted.contains(&s.name.as_ref()))
        .collect();
    assert_eq!(chain.len(), 5, "{chain:#?}");
    for span in &chain {
        assert_eq!(
            span.span_context.trace_id(),
            trace_id,
            "{} of {:?} is in another trace",
            span.name,
            attribute(span, "service")
        );
    }

    // root -> call otel-outer -> handle otel-outer -> call otel-inner -> handle otel-inner
    let outer_call = the_span(&spans, "aegis.rpc.call", "otel-outer");
    let outer_handle = the_span(&spans, "aegis.rpc.handle", "otel-outer");
    let inner_call = the_span(&spans, "aegis.rpc.call", "otel-inner");
    let inner_handle = the_span(&spans, "aegis.rpc.handle", "otel-inner");
    assert_eq!(outer_call.parent_span_id, root.span_context.span_id());
    assert!(!outer_call.parent_span_is_remote);
    assert_eq!(
        outer_handle.parent_span_id,
        outer_call.span_context.span_id()
    );
    assert!(outer_handle.parent_span_is_remote);
    assert_eq!(
        inner_call.parent_span_id,
        outer_handle.span_context.span_id()
    );
    assert!(!inner_call.parent_span_is_remote);
    assert_eq!(
        inner_handle.parent_span_id,
        inner_call.span_context.span_id()
    );
    assert!(inner_handle.parent_span_is_remote);
    // Each handle span names the message of the call it answers.
    for (call, handle) in [(outer_call, outer_handle), (inner_call, inner_handle)] {
        let message_id = attribute(call, "message_id").expect("the call's message_id");
        assert_eq!(attribute(handle, "message_id"), Some(message_id));
    }

    // The envelopes' `trace_id` is the same trace, as a UUID.
    let expected = TraceContext::from_parts(
        trace_id.to_bytes(),
        root.span_context.span_id().to_bytes(),
        true,
    )
    .expect("a valid trace")
    .envelope_trace_id();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("otel-outer", expected.clone()),
            ("otel-inner", expected.clone())
        ]
    );
    for span in chain.iter().filter(|s| s.name != "test.root") {
        assert_eq!(
            attribute(span, "trace_id").as_deref(),
            Some(expected.as_str()),
            "{}",
            span.name
        );
    }
}
