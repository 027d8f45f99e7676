//! Observability end to end on a real nats-server started by each test: metrics (the
//! snapshot and a Prometheus scrape over HTTP), one trace across RPC, event and command,
//! and the NATS service API (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) with `health`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::adapters::prometheus::serve_prometheus;
use aegis_sdk::application::kv::{Kv, Versioned};
use aegis_sdk::application::metrics::Metrics;
use aegis_sdk::application::propagation::{current, in_trace};
use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::domain::trace::{TraceContext, TRACEPARENT};
use aegis_sdk::domain::Event;
use aegis_sdk::ports::kv::BucketConfig;
use aegis_sdk::{
    Client, CommandContext, ConnectOptions, DeliveryMode, EventContext, FailoverPolicy,
    HandlerError, RpcContext, Service,
};
use aegis_test_support::NatsServer;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn connect(server: &NatsServer) -> Client {
    Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A name no other test in this binary uses (metrics are per process).
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid_hex()[..8])
}

fn uuid_hex() -> String {
    TraceContext::new_root().trace_id_hex()
}

/// `GET path` over plain HTTP; the status line and the body.
async fn http_get(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The samples of an exposition: (name, labels, value).
fn parse_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect("label=value");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("a number"),
        };
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn scraped(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<f64> {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect()
}

#[tokio::test]
async fn snapshot_and_prometheus_scrape_count_calls_failures_and_events() {
    const N: u64 = 20;
    const M: u64 = 5;
    const K: u64 = 7;

    let server = NatsServer::start();
    let client = connect(&server).await;
    let endpoint = serve_prometheus("127.0.0.1:0")
        .await
        .expect("metrics endpoint");
    assert!(Metrics::global().is_enabled());

    let service_name = unique("obs-metrics-");
    let domain = unique("obsm");
    let pattern = format!("{domain}.happened");
    let handled = Arc::new(Mutex::new(0u64));
    let service = Service::builder(&service_name)
        .rpc("ok", |_: RpcContext, p: Value| async move {
            Ok::<_, HandlerError>(p)
        })
        .rpc("fail", |_: RpcContext, _: Value| async move {
            Err::<Value, _>(HandlerError::msg("boom"))
        })
        .on_event(&pattern, DeliveryMode::Compete, {
            let handled = handled.clone();
            move |_: EventContext, _: Event<Value>| {
                let handled = handled.clone();
                async move {
                    *handled.lock().unwrap() += 1;
                    Ok::<_, HandlerError>(())
                }
            }
        })
        .with_registry(RegistryOptions::default())
        .build()
        .unwrap();
    service.start(&client).await.unwrap();

    for i in 0..N {
        let _: Value = client
            .call(&service_name, "ok", json!({"i": i}))
            .await
            .unwrap();
    }
    for _ in 0..M {
        let result: aegis_sdk::Result<Value> = client.call(&service_name, "fail", json!({})).await;
        assert!(result.is_err());
    }
    for i in 0..K {
        client
            .publish_event(&domain, "happened", json!({"i": i}))
            .await
            .unwrap();
    }
    eventually("every event handled", || *handled.lock().unwrap() == K).await;
    // The handler's count is bumped before the worker records its outcome.
    let events_handled = || {
        Metrics::global().snapshot().counter(
            "aegis_events_handled_total",
            &[("service", &service_name), ("outcome", "ok")],
        )
    };
    eventually("the events' metrics", || events_handled() == K).await;

    let snapshot = Metrics::global().snapshot();
    let svc = service_name.as_str();
    let count = |name: &str, labels: &[(&str, &str)]| snapshot.counter(name, labels);
    let server_total = "aegis_rpc_server_requests_total";
    let client_total = "aegis_rpc_client_requests_total";
    assert_eq!(
        count(
            server_total,
            &[("service", svc), ("method", "ok"), ("outcome", "ok")]
        ),
        N
    );
    assert_eq!(
        count(
            server_total,
            &[("service", svc), ("method", "fail"), ("outcome", "error")]
        ),
        M
    );
    assert_eq!(count(server_total, &[("service", svc)]), N + M);
    assert_eq!(
        count(
            client_total,
            &[("service", svc), ("method", "ok"), ("outcome", "ok")]
        ),
        N
    );
    assert_eq!(
        count(
            client_total,
            &[("service", svc), ("method", "fail"), ("outcome", "error")]
        ),
        M
    );
    assert_eq!(count(client_total, &[("service", svc)]), N + M);
    assert_eq!(
        count(
            "aegis_events_published_total",
            &[("domain", &domain), ("outcome", "ok")]
        ),
        K
    );
    assert_eq!(
        count("aegis_events_published_total", &[("domain", &domain)]),
        K
    );
    assert_eq!(
        count(
            "aegis_events_handled_total",
            &[("service", svc), ("pattern", &pattern)]
        ),
        K
    );
    assert_eq!(
        snapshot.gauge("aegis_rpc_server_in_flight", &[("service", svc)]),
        0
    );

    for (name, method, expected) in [
        ("aegis_rpc_server_duration_seconds", "ok", N),
        ("aegis_rpc_server_duration_seconds", "fail", M),
        ("aegis_rpc_client_duration_seconds", "ok", N),
        ("aegis_rpc_client_duration_seconds", "fail", M),
    ] {
        let timing = snapshot
            .timing(name, &[("service", svc), ("method", method)])
            .unwrap_or_else(|| panic!("no {name} for {method}"));
        assert_eq!(timing.count, expected, "{name} {method}");
        assert!(timing.min > Duration::ZERO, "{name} {method}: {timing:?}");
        assert!(
            timing.min <= timing.p50
                && timing.p50 <= timing.p90
                && timing.p90 <= timing.p99
                && timing.p99 <= timing.max,
            "{name} {method}: {timing:?}"
        );
        assert!(
            timing.min <= timing.mean && timing.mean <= timing.max,
            "{timing:?}"
        );
    }
    let events = snapshot
        .timing(
            "aegis_events_publish_duration_seconds",
            &[("domain", &domain)],
        )
        .unwrap();
    assert_eq!(events.count, K);

    // The same figures over HTTP, in the Prometheus text format.
    let (status, body) = http_get(endpoint.local_addr(), "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let samples = parse_exposition(&body);
    let one = |name: &str, labels: &[(&str, &str)]| {
        let values = scraped(&samples, name, labels);
        assert_eq!(values.len(), 1, "{name} {labels:?}: {values:?}");
        values[0]
    };
    let method_ok = [("service", svc), ("method", "ok")];
    let method_fail = [("service", svc), ("method", "fail")];
    assert_eq!(
        one(
            server_total,
            &[("service", svc), ("method", "ok"), ("outcome", "ok")]
        ),
        N as f64
    );
    assert_eq!(
        one(
            server_total,
            &[("service", svc), ("method", "fail"), ("outcome", "error")]
        ),
        M as f64
    );
    assert_eq!(
        one(
            client_total,
            &[("service", svc), ("method", "ok"), ("outcome", "ok")]
        ),
        N as f64
    );
    assert_eq!(
        one(
            client_total,
            &[("service", svc), ("method", "fail"), ("outcome", "error")]
        ),
        M as f64
    );
    assert_eq!(
        one(
            "aegis_events_published_total",
            &[("domain", &domain), ("outcome", "ok")]
        ),
        K as f64
    );
    assert_eq!(
        one(
            "aegis_events_handled_total",
            &[("service", svc), ("pattern", &pattern), ("outcome", "ok")]
        ),
        K as f64
    );
    assert_eq!(
        one("aegis_rpc_server_duration_seconds_count", &method_ok),
        N as f64
    );
    assert_eq!(
        one("aegis_rpc_server_duration_seconds_count", &method_fail),
        M as f64
    );
    assert_eq!(
        one("aegis_rpc_client_duration_seconds_count", &method_ok),
        N as f64
    );
    let buckets = scraped(
        &samples,
        "aegis_rpc_server_duration_seconds_bucket",
        &method_ok,
    );
    assert!(buckets.len() > 2, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert_eq!(
        one(
            "aegis_rpc_server_duration_seconds_bucket",
            &[("service", svc), ("method", "ok"), ("le", "+Inf")]
        ),
        N as f64
    );
    let sum = one("aegis_rpc_server_duration_seconds_sum", &method_ok);
    let timing = snapshot
        .timing("aegis_rpc_server_duration_seconds", &method_ok)
        .unwrap();
    assert!(
        sum >= timing.min.as_secs_f64() * N as f64 && sum <= timing.max.as_secs_f64() * N as f64
    );

    // KV operations and the registry's heartbeat (written once at start).
    let bucket = unique("obs_kv_");
    let kv = Kv::open(&client, BucketConfig::new(&bucket)).await.unwrap();
    for i in 0..3 {
        kv.put("k", &json!({"i": i})).await.unwrap();
    }
    let _: Option<Versioned<Value>> = kv.get("k").await.unwrap();
    let stale = kv.update("k", &json!({}), 1).await;
    assert!(stale.is_err());
    let snapshot = Metrics::global().snapshot();
    let kv_ops = |operation: &str, outcome: &str| {
        snapshot.counter(
            "aegis_kv_operations_total",
            &[
                ("bucket", &bucket),
                ("operation", operation),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(kv_ops("put", "ok"), 3);
    assert_eq!(kv_ops("get", "ok"), 1);
    assert_eq!(kv_ops("update", "conflict"), 1);
    let kv_timing = snapshot
        .timing(
            "aegis_kv_operation_duration_seconds",
            &[("bucket", &bucket), ("operation", "put")],
        )
        .unwrap();
    assert_eq!(kv_timing.count, 3);
    assert!(
        snapshot.counter(
            "aegis_registry_heartbeats_total",
            &[("service", svc), ("outcome", "ok")]
        ) >= 1
    );

    let (status, _) = http_get(endpoint.local_addr(), "/elsewhere").await;
    assert!(status.contains("404"), "{status}");
    service.stop().await.unwrap();
}

#[tokio::test]
async fn handled_events_of_many_types_on_one_subscription_make_one_series() {
    const TYPES: u64 = 40;
    Metrics::enable();
    let server = NatsServer::start();
    let client = connect(&server).await;

    let service_name = unique("obs-types-");
    let domain = unique("obst");
    let pattern = format!("{domain}.*");
    let handled = Arc::new(Mutex::new(0u64));
    let service = Service::builder(&service_name)
        .on_event(&pattern, DeliveryMode::Compete, {
            let handled = handled.clone();
            move |_: EventContext, _: Event<Value>| {
                let handled = handled.clone();
                async move {
                    *handled.lock().unwrap() += 1;
                    Ok::<_, HandlerError>(())
                }
            }
        })
        .build()
        .unwrap();
    service.start(&client).await.unwrap();

    // Every event has a type of its own, as a careless or hostile publisher may send.
    for i in 0..TYPES {
        client
            .publish_event(&domain, &format!("type{i}"), json!({"i": i}))
            .await
            .unwrap();
    }
    eventually("every event handled", || *handled.lock().unwrap() == TYPES).await;
    let of_service = |snapshot: &aegis_sdk::application::metrics::MetricsSnapshot| {
        snapshot
            .counters
            .iter()
            .filter(|s| {
                s.name == "aegis_events_handled_total" && s.label("service") == Some(&service_name)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    eventually("the handled events counted", || {
        of_service(&Metrics::global().snapshot())
            .iter()
            .map(|s| s.value)
            .sum::<u64>()
            == TYPES
    })
    .await;

    let snapshot = Metrics::global().snapshot();
    let counters = of_service(&snapshot);
    assert_eq!(counters.len(), 1, "{counters:?}");
    assert_eq!(
        counters[0].labels,
        [
            ("service".to_owned(), service_name.clone()),
            ("pattern".to_owned(), pattern.clone()),
            ("outcome".to_owned(), "ok".to_owned()),
        ]
    );
    assert_eq!(counters[0].value, TYPES);
    let timings: Vec<_> = snapshot
        .timings
        .iter()
        .filter(|s| {
            s.name == "aegis_events_handle_duration_seconds"
                && s.label("service") == Some(&service_name)
        })
        .collect();
    assert_eq!(timings.len(), 1, "{timings:?}");
    assert_eq!(timings[0].label("pattern"), Some(pattern.as_str()));
    assert_eq!(timings[0].value.count, TYPES);
    // No handled-events series anywhere carries the event's type.
    let handled_labels = snapshot
        .counters
        .iter()
        .filter(|s| s.name.starts_with("aegis_events_handle"))
        .map(|s| &s.labels)
        .chain(
            snapshot
                .timings
                .iter()
                .filter(|s| s.name.starts_with("aegis_events_handle"))
                .map(|s| &s.labels),
        );
    for labels in handled_labels {
        assert!(labels.iter().all(|(n, _)| n != "event_type"), "{labels:?}");
    }

    service.stop().await.unwrap();
}

#[tokio::test]
async fn calls_and_commands_with_invalid_names_make_no_series() {
    Metrics::enable();
    let server = NatsServer::start();
    let client = connect(&server).await;
    let bad_service = unique("evil\"svc");
    let bad_method = unique("m\nx");
    let good_service = unique("obs-names-");

    for (service, method) in [
        (bad_service.as_str(), bad_method.as_str()),
        (bad_service.as_str(), "ok"),
        (good_service.as_str(), bad_method.as_str()),
    ] {
        let called: aegis_sdk::Result<Value> = client.call(service, method, json!({})).await;
        let Err(error) = called else {
            panic!("call {service:?} {method:?} was not refused");
        };
        assert_eq!(error.kind(), aegis_sdk::ErrorKind::InvalidName, "{error}");
        let Err(error) = client.send_command(service, method, json!({})).await else {
            panic!("command {service:?} {method:?} was not refused");
        };
        assert_eq!(error.kind(), aegis_sdk::ErrorKind::InvalidName, "{error}");
    }

    let snapshot = Metrics::global().snapshot();
    let labels = snapshot
        .counters
        .iter()
        .map(|s| (&s.name, &s.labels))
        .chain(snapshot.gauges.iter().map(|s| (&s.name, &s.labels)))
        .chain(snapshot.timings.iter().map(|s| (&s.name, &s.labels)));
    for (name, labels) in labels {
        for (_, value) in labels {
            assert!(
                *value != bad_service && *value != bad_method && *value != good_service,
                "{name} {labels:?}"
            );
        }
    }
}

/// What one hop saw of the trace: its name, the envelope's trace id, the trace id in
/// the `traceparent` header, and the task's current trace.
type Hop = (&'static str, String, Option<String>, Option<String>);

fn header_trace(headers: &aegis_sdk::ports::Headers) -> Option<String> {
    headers
        .get(TRACEPARENT)
        .and_then(TraceContext::parse_traceparent)
        .map(|t| t.envelope_trace_id())
}

/// A span's name and its fields as text.
type SpanRecord = (String, BTreeMap<String, String>);

/// The spans recorded while a test runs.
#[derive(Clone, Default)]
struct Spans {
    live: Arc<Mutex<std::collections::HashMap<u64, SpanRecord>>>,
    closed: Arc<Mutex<Vec<SpanRecord>>>,
}

struct FieldText<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for FieldText<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldText(&mut fields));
        let name = attrs.metadata().name().to_owned();
        self.live
            .lock()
            .unwrap()
            .insert(id.into_u64(), (name, fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some((_, fields)) = self.live.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut FieldText(fields));
        }
    }

    fn on_close(&self, id: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = self.live.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let closed = self.closed.lock().unwrap();
        let live = self.live.lock().unwrap();
        closed
            .iter()
            .chain(live.values())
            .filter(|(n, _)| n == name)
            .map(|(_, fields)| fields.clone())
            .collect()
    }
}

/// The span recorder of this test binary, installed as the global subscriber once (a
/// per-thread one would miss callsites whose interest another test's thread cached).
fn recorded_spans() -> Spans {
    static SPANS: std::sync::OnceLock<Spans> = std::sync::OnceLock::new();
    SPANS
        .get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt as _;
            let spans = Spans::default();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(spans.clone()),
            )
            .expect("no other global subscriber in this test binary");
            spans
        })
        .clone()
}

#[tokio::test]
async fn one_trace_across_rpc_event_and_command() {
    let spans = recorded_spans();
    Metrics::enable();

    let server = NatsServer::start();
    let client = connect(&server).await;
    let hops: Arc<Mutex<Vec<Hop>>> = Arc::default();
    let domain = unique("chain");

    // B: RPC `start`, which publishes `{domain}.started`.
    let b = Service::builder("trace-b")
        .rpc("start", {
            let hops = hops.clone();
            let domain = domain.clone();
            move |ctx: RpcContext, _: Value| {
                let hops = hops.clone();
                let domain = domain.clone();
                async move {
                    hops.lock().unwrap().push((
                        "rpc",
                        ctx.trace_id().to_owned(),
                        header_trace(ctx.headers()),
                        current().map(|t| t.envelope_trace_id()),
                    ));
                    ctx.client()
                        .publish_event(&domain, "started", json!({}))
                        .await?;
                    Ok::<_, HandlerError>(json!({"ok": true}))
                }
            }
        })
        .build()
        .unwrap();
    // C: handles the event, sends command `finish` to D.
    let c = Service::builder("trace-c")
        .on_event(&format!("{domain}.started"), DeliveryMode::Compete, {
            let hops = hops.clone();
            move |ctx: EventContext, event: Event<Value>| {
                let hops = hops.clone();
                async move {
                    hops.lock().unwrap().push((
                        "event",
                        event.trace_id.clone(),
                        header_trace(ctx.headers()),
                        current().map(|t| t.envelope_trace_id()),
                    ));
                    ctx.client()
                        .send_command("trace-d", "finish", json!({}))
                        .await?;
                    Ok::<_, HandlerError>(())
                }
            }
        })
        .build()
        .unwrap();
    // D: runs the command.
    let d = Service::builder("trace-d")
        .on_command("finish", {
            let hops = hops.clone();
            move |ctx: CommandContext, _: Value| {
                let hops = hops.clone();
                async move {
                    hops.lock().unwrap().push((
                        "command",
                        ctx.trace_id().to_owned(),
                        header_trace(ctx.headers()),
                        current().map(|t| t.envelope_trace_id()),
                    ));
                    Ok::<_, HandlerError>(json!({}))
                }
            }
        })
        .build()
        .unwrap();
    for service in [&b, &c, &d] {
        service.start(&client).await.unwrap();
    }

    // A: the caller, inside a trace of its own choosing.
    let root = TraceContext::new_root();
    let _: Value = in_trace(root, client.call("trace-b", "start", json!({})))
        .await
        .unwrap();
    eventually("all three hops", || hops.lock().unwrap().len() == 3).await;

    let expected = root.envelope_trace_id();
    let hops = hops.lock().unwrap().clone();
    let names: Vec<_> = hops.iter().map(|h| h.0).collect();
    assert_eq!(names, ["rpc", "event", "command"]);
    for (hop, envelope, header, current) in &hops {
        assert_eq!(envelope, &expected, "{hop}: envelope trace_id");
        assert_eq!(
            header.as_deref(),
            Some(expected.as_str()),
            "{hop}: traceparent"
        );
        assert_eq!(
            current.as_deref(),
            Some(expected.as_str()),
            "{hop}: current trace"
        );
    }

    // The spans of the call and of each handler carry the trace and their ids.
    let calls = spans.named("aegis.rpc.call");
    let call = calls
        .iter()
        .find(|f| f.get("service").map(String::as_str) == Some("trace-b"))
        .expect("the call's span");
    assert_eq!(call["method"], "start");
    assert_eq!(call["trace_id"], expected);
    let of = |name: &str, service: &str| -> Vec<BTreeMap<String, String>> {
        spans
            .named(name)
            .into_iter()
            .filter(|f| f.get("service").map(String::as_str) == Some(service))
            .collect()
    };
    let handled = of("aegis.rpc.handle", "trace-b");
    assert_eq!(handled.len(), 1, "{handled:?}");
    let handle = &handled[0];
    assert_eq!(handle["service"], "trace-b");
    assert_eq!(handle["method"], "start");
    assert_eq!(handle["instance"], b.instance_id().as_str());
    assert_eq!(handle["message_id"], call["message_id"]);
    assert_eq!(handle["trace_id"], expected);
    let event = of("aegis.event.handle", "trace-c");
    assert_eq!(event.len(), 1, "{event:?}");
    assert_eq!(event[0]["service"], "trace-c");
    assert_eq!(event[0]["instance"], c.instance_id().as_str());
    assert_eq!(event[0]["event_type"], "started");
    assert_eq!(event[0]["pattern"], format!("{domain}.started"));
    assert_eq!(event[0]["trace_id"], expected);
    assert!(event[0].contains_key("message_id"));
    let sent = of("aegis.command.send", "trace-d");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["command"], "finish");
    assert_eq!(sent[0]["trace_id"], expected);
    let command = of("aegis.command.handle", "trace-d");
    assert_eq!(command.len(), 1, "{command:?}");
    assert_eq!(command[0]["service"], "trace-d");
    assert_eq!(command[0]["command"], "finish");
    assert_eq!(command[0]["trace_id"], expected);
    assert_eq!(command[0]["command_id"], sent[0]["command_id"]);
    assert!(
        uuid::Uuid::parse_str(&sent[0]["command_id"]).is_ok(),
        "{sent:?}"
    );

    // The command in the metrics: sent once, run once.
    let commands = |name: &str| {
        Metrics::global().snapshot().counter(
            name,
            &[
                ("service", "trace-d"),
                ("command", "finish"),
                ("outcome", "ok"),
            ],
        )
    };
    assert_eq!(commands("aegis_commands_sent_total"), 1);
    eventually("the command's run counted", || {
        commands("aegis_commands_handled_total") == 1
    })
    .await;

    // A call outside any trace starts a new one, whose envelope id is a UUID v4; with no
    // sending span to name, the envelope alone carries it (no `traceparent` header).
    let lone = Arc::new(Mutex::new(None));
    let e = Service::builder("trace-e")
        .rpc("who", {
            let lone = lone.clone();
            move |ctx: RpcContext, _: Value| {
                let lone = lone.clone();
                async move {
                    *lone.lock().unwrap() = Some((
                        ctx.trace_id().to_owned(),
                        header_trace(ctx.headers()),
                        current().map(|t| t.envelope_trace_id()),
                    ));
                    Ok::<_, HandlerError>(json!({}))
                }
            }
        })
        .build()
        .unwrap();
    e.start(&client).await.unwrap();
    let _: Value = client.call("trace-e", "who", json!({})).await.unwrap();
    let (envelope, header, current_trace) = lone.lock().unwrap().take().unwrap();
    assert_ne!(envelope, expected);
    assert_eq!(header, None);
    assert_eq!(current_trace.as_deref(), Some(envelope.as_str()));
    assert!(TraceContext::from_envelope_trace_id(&envelope).is_some());

    // A request with no header, as a Python peer sends it: the handler continues the
    // envelope's trace.
    let python_trace = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
    let request = json!({
        "message_id": "3f2b8c1e-0000-4000-8000-000000000002",
        "trace_id": python_trace,
        "method": "who",
        "params": {},
        "timeout": 5.0,
    });
    let nats = async_nats::connect(server.url()).await.unwrap();
    nats.request(
        "rpc.trace-e.who",
        serde_json::to_vec(&request).unwrap().into(),
    )
    .await
    .unwrap();
    let (envelope, header, current_trace) = lone.lock().unwrap().take().unwrap();
    assert_eq!(envelope, python_trace);
    assert_eq!(header, None);
    assert_eq!(current_trace.as_deref(), Some(python_trace));

    // A foreign sender whose header and envelope disagree: the header wins, and the
    // handler's and the reply's `trace_id` agree with it.
    let header_trace_id = TraceContext::new_root();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(TRACEPARENT, header_trace_id.traceparent().as_str());
    let reply = nats
        .request_with_headers(
            "rpc.trace-e.who",
            headers,
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await
        .unwrap();
    let wanted = header_trace_id.envelope_trace_id();
    let (envelope, _, current_trace) = lone.lock().unwrap().take().unwrap();
    assert_eq!(envelope, wanted);
    assert_eq!(current_trace.as_deref(), Some(wanted.as_str()));
    let reply: Value = aegis_sdk::domain::codec::decode(&reply.payload).unwrap();
    assert_eq!(reply["trace_id"], wanted.as_str());

    for service in [&b, &c, &d, &e] {
        service.stop().await.unwrap();
    }
}

/// Every reply to a request on `subject` within a short window.
async fn gather(nats: &async_nats::Client, subject: &str) -> Vec<async_nats::Message> {
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply(subject.to_owned(), inbox, "".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let mut gathered = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), replies.next()).await
    {
        // The server's "no responders" status is not a reply.
        if message.status.is_none() {
            gathered.push(message);
        }
    }
    gathered
}

#[tokio::test]
async fn service_api_ping_info_and_stats_follow_the_nats_schema() {
    use async_nats::service::{Info, PingResponse, Stats};

    let server = NatsServer::start();
    let client = connect(&server).await;
    let build = |id: &str| {
        Service::builder("obs-micro")
            .version("2.1.0")
            .instance_id(id)
            .rpc("echo", |_: RpcContext, p: Value| async move {
                Ok::<_, HandlerError>(p)
            })
            .rpc("fail", |_: RpcContext, _: Value| async move {
                Err::<Value, _>(HandlerError::invalid_request("bad input"))
            })
            .build()
            .unwrap()
    };
    let one = build("obs-micro-one");
    let two = build("obs-micro-two");
    one.start(&client).await.unwrap();
    two.start(&client).await.unwrap();

    // Routed to instance one, so that its counts are known.
    for i in 0..3 {
        let _: Value = client
            .call("obs-micro", "echo", json!({"i": i}))
            .instance("obs-micro-one")
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let failed: aegis_sdk::Result<Value> = client
            .call("obs-micro", "fail", json!({}))
            .instance("obs-micro-one")
            .await;
        assert!(failed.is_err());
    }

    let nats = async_nats::connect(server.url()).await.unwrap();

    // PING: all services, by name, by name and id.
    let everyone = gather(&nats, "$SRV.PING").await;
    assert_eq!(everyone.len(), 2);
    let by_name = gather(&nats, "$SRV.PING.obs-micro").await;
    assert_eq!(by_name.len(), 2);
    let by_id = gather(&nats, "$SRV.PING.obs-micro.obs-micro-one").await;
    assert_eq!(by_id.len(), 1);
    let ping: PingResponse = serde_json::from_slice(&by_id[0].payload).expect("ping schema");
    assert_eq!(ping.kind, "io.nats.micro.v1.ping_response");
    assert_eq!(
        (ping.name.as_str(), ping.id.as_str()),
        ("obs-micro", "obs-micro-one")
    );
    assert_eq!(ping.version, "2.1.0");
    let mut ids: Vec<String> = everyone
        .iter()
        .map(|m| {
            serde_json::from_slice::<PingResponse>(&m.payload)
                .unwrap()
                .id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["obs-micro-one", "obs-micro-two"]);
    assert!(gather(&nats, "$SRV.PING.someone-else").await.is_empty());

    // INFO: the RPC methods as endpoints, with their subjects and queue group.
    let info = gather(&nats, "$SRV.INFO.obs-micro.obs-micro-one").await;
    assert_eq!(info.len(), 1);
    let info: Info = serde_json::from_slice(&info[0].payload).expect("info schema");
    assert_eq!(info.kind, "io.nats.micro.v1.info_response");
    assert_eq!(info.id, "obs-micro-one");
    let endpoints: Vec<(String, String, String)> = info
        .endpoints
        .iter()
        .map(|e| (e.name.clone(), e.subject.clone(), e.queue_group.clone()))
        .collect();
    let endpoint = |name: &str| {
        (
            name.to_owned(),
            format!("rpc.obs-micro.{name}"),
            "rpc.obs-micro".to_owned(),
        )
    };
    assert_eq!(
        endpoints,
        [endpoint("echo"), endpoint("fail"), endpoint("health")]
    );
    assert_eq!(gather(&nats, "$SRV.INFO").await.len(), 2);

    // STATS: per-endpoint counts of instance one; instance two saw nothing.
    let stats = gather(&nats, "$SRV.STATS.obs-micro.obs-micro-one").await;
    assert_eq!(stats.len(), 1);
    let raw: Value = serde_json::from_slice(&stats[0].payload).unwrap();
    let stats: Stats = serde_json::from_slice(&stats[0].payload).expect("stats schema");
    assert_eq!(stats.kind, "io.nats.micro.v1.stats_response");
    assert_eq!(
        (stats.name.as_str(), stats.id.as_str()),
        ("obs-micro", "obs-micro-one")
    );
    let by_name = |name: &str| {
        stats
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no endpoint {name}"))
    };
    let (echo, fail) = (by_name("echo"), by_name("fail"));
    assert_eq!((echo.requests, echo.errors), (3, 0));
    assert_eq!((fail.requests, fail.errors), (2, 2));
    assert!(echo.last_error.is_none());
    let last = fail.last_error.as_ref().expect("a last error");
    assert!(
        last.status.contains("INVALID_REQUEST: bad input"),
        "{last:?}"
    );
    assert_eq!(echo.queue_group, "rpc.obs-micro");
    assert!(echo.processing_time > Duration::ZERO);
    assert_eq!(
        echo.average_processing_time.as_nanos(),
        echo.processing_time.as_nanos() / 3
    );
    // Durations are integer nanoseconds on the wire, `started` RFC 3339.
    let echo_raw = raw["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "echo")
        .unwrap();
    assert!(echo_raw["processing_time"].is_u64());
    // `data` is always there, an object (nats-py cannot read a reply without it).
    for endpoint in raw["endpoints"].as_array().unwrap() {
        assert_eq!(endpoint["data"], json!({}), "{endpoint}");
    }
    assert_eq!(echo.data, Some(json!({})));
    assert!(echo_raw["average_processing_time"].is_u64());
    assert!(chrono::DateTime::parse_from_rfc3339(raw["started"].as_str().unwrap()).is_ok());

    let other = gather(&nats, "$SRV.STATS.obs-micro.obs-micro-two").await;
    let other: Stats = serde_json::from_slice(&other[0].payload).unwrap();
    assert!(other.endpoints.iter().all(|e| e.requests == 0));

    // The built-in health method, on a chosen instance.
    let health: Value = client
        .call("obs-micro", "health", json!({}))
        .instance("obs-micro-two")
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["instance"], "obs-micro-two");
    assert_eq!(health["service"], "obs-micro");
    assert_eq!(health["version"], "2.1.0");
    assert!(health["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(health["leadership"].is_null());

    // A failure reply also tells NATS service clients, in headers.
    let request = json!({
        "message_id": "3f2b8c1e-0000-4000-8000-000000000001",
        "trace_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
        "method": "fail",
        "params": {},
        "timeout": 5.0,
    });
    let reply = nats
        .request(
            "rpc.obs-micro.fail",
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await
        .unwrap();
    let headers = reply.headers.expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "400"
    );
    assert!(headers
        .get("Nats-Service-Error")
        .unwrap()
        .as_str()
        .starts_with("INVALID_REQUEST: bad input"));
    // The reply is MessagePack or JSON, sniffed as peers do.
    let envelope: Value = aegis_sdk::domain::codec::decode(&reply.payload).unwrap();
    assert_eq!(envelope["success"], false);
    assert_eq!(envelope["trace_id"], "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");

    one.stop().await.unwrap();
    two.stop().await.unwrap();
    // A stopped instance no longer answers.
    assert_eq!(gather(&nats, "$SRV.PING.obs-micro").await.len(), 0);
}

#[tokio::test]
async fn health_reports_leadership_and_a_user_health_method_wins() {
    Metrics::enable();
    let server = NatsServer::start();
    let client = connect(&server).await;

    let leader = Service::builder("obs-single")
        .instance_id("obs-single-a")
        .single_active("default", FailoverPolicy::balanced())
        .exclusive_rpc("work", |_: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!({}))
        })
        .build()
        .unwrap();
    leader.start(&client).await.unwrap();
    let leadership = leader.leadership().unwrap().clone();
    eventually("leadership", || leadership.is_leader()).await;

    let health: Value = client
        .call("obs-single", "health", json!({}))
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["leadership"]["group"], "default");
    assert_eq!(health["leadership"]["role"], "leader");
    assert_eq!(health["leadership"]["is_leader"], true);
    assert_eq!(health["leadership"]["leader"], "obs-single-a");
    assert!(health["leadership"]["fencing_token"].as_u64().is_some());

    // The election in the metrics: the leader gauge, and the acquire that won.
    let leader_gauge = || {
        Metrics::global().snapshot().gauge(
            "aegis_election_leader",
            &[
                ("service", "obs-single"),
                ("group", "default"),
                ("instance", "obs-single-a"),
            ],
        )
    };
    eventually("the leader gauge", || leader_gauge() == 1).await;
    let acquired = Metrics::global().snapshot().counter(
        "aegis_election_operations_total",
        &[
            ("service", "obs-single"),
            ("operation", "acquire"),
            ("outcome", "ok"),
        ],
    );
    assert_eq!(acquired, 1);

    let custom = Service::builder("obs-custom")
        .rpc("health", |_: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!({"custom": true}))
        })
        .build()
        .unwrap();
    custom.start(&client).await.unwrap();
    let health: Value = client
        .call("obs-custom", "health", json!({}))
        .await
        .unwrap();
    assert_eq!(health, json!({"custom": true}));

    leader.stop().await.unwrap();
    assert_eq!(leader_gauge(), 0);
    custom.stop().await.unwrap();
}
