//! RPC benchmark: this SDK against raw async-nats request/reply, in one run, against one
//! local nats-server started here.
//!
//! ```text
//! cargo bench -p aegis-sdk --bench rpc
//! ```
//!
//! Prints sequential p50/p99, throughput at 64 and 256 calls in flight, process CPU time
//! per call (client and service share this process; nats-server counted apart), and
//! the SDK/raw ratios, then the SDK with metrics off and on side by side. Both sides run on a current-thread runtime: the server takes
//! about one of our two cores, and one runtime thread per process measured best here.

#![allow(clippy::print_stdout, missing_docs)]

#[path = "common/cpu.rs"]
mod cpu;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_sdk::application::metrics::Metrics;
use aegis_sdk::{Client, ConnectOptions, HandlerError, RpcContext, Service};
use aegis_test_support::NatsServer;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

const SEQUENTIAL_CALLS: usize = 5_000;
const THROUGHPUT_CALLS: usize = 60_000;

#[derive(Serialize, Deserialize)]
struct Echo {
    message: String,
}

/// CPU time of this process so far (see [`cpu::cpu_time_of`]).
fn cpu_time() -> Duration {
    cpu::cpu_time_of("self")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

struct Figures {
    p50: Duration,
    p99: Duration,
    rate_64: f64,
    rate_256: f64,
    cpu_per_call: Duration,
    server_cpu_per_call: Duration,
}

/// The nats-server's pid, for its CPU time.
static SERVER_PID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn server_cpu_time() -> Duration {
    SERVER_PID
        .get()
        .map_or(Duration::ZERO, |pid| cpu::cpu_time_of(pid))
}

async fn measure<F, Fut>(call: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    for _ in 0..500 {
        call().await;
    }
    let mut latencies = Vec::with_capacity(SEQUENTIAL_CALLS);
    for _ in 0..SEQUENTIAL_CALLS {
        let started = Instant::now();
        call().await;
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();

    let mut rates = Vec::new();
    let mut cpu_per_call = Duration::ZERO;
    let mut server_cpu_per_call = Duration::ZERO;
    for in_flight in [64usize, 256] {
        let remaining = Arc::new(AtomicUsize::new(THROUGHPUT_CALLS));
        let cpu_before = cpu_time();
        let server_before = server_cpu_time();
        let started = Instant::now();
        let workers: Vec<_> = (0..in_flight)
            .map(|_| {
                let call = call.clone();
                let remaining = remaining.clone();
                tokio::spawn(async move {
                    while remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        call().await;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let elapsed = started.elapsed();
        let cpu = cpu_time().saturating_sub(cpu_before);
        let server_cpu = server_cpu_time().saturating_sub(server_before);
        rates.push(THROUGHPUT_CALLS as f64 / elapsed.as_secs_f64());
        if in_flight == 64 {
            cpu_per_call = cpu / THROUGHPUT_CALLS as u32;
            server_cpu_per_call = server_cpu / THROUGHPUT_CALLS as u32;
        }
    }
    Figures {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        rate_64: rates[0],
        rate_256: rates[1],
        cpu_per_call,
        server_cpu_per_call,
    }
}

/// Raw request/reply; with `traceparent`, each request carries a fresh one, as the
/// SDK's do, to show what the header costs at the transport alone.
async fn raw(url: &str, traceparent: bool) -> Figures {
    let server_side = async_nats::connect(url).await.unwrap();
    let mut subscriber = server_side
        .queue_subscribe("raw.echo", "raw".to_owned())
        .await
        .unwrap();
    let responder = tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            if let Some(reply) = message.reply {
                server_side.publish(reply, message.payload).await.unwrap();
            }
        }
    });
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(url)
        .await
        .unwrap();
    client.flush().await.unwrap();
    let payload = bytes::Bytes::from(
        serde_json::to_vec(&Echo {
            message: "hello".into(),
        })
        .unwrap(),
    );
    let figures = measure(move || {
        let client = client.clone();
        let payload = payload.clone();
        async move {
            if traceparent {
                let mut headers = async_nats::HeaderMap::new();
                let trace = aegis_sdk::domain::trace::TraceContext::new_root();
                headers.insert("traceparent", trace.traceparent().as_str());
                client
                    .request_with_headers("raw.echo", headers, payload)
                    .await
                    .unwrap();
            } else {
                client.request("raw.echo", payload).await.unwrap();
            }
        }
    })
    .await;
    responder.abort();
    figures
}

/// Raw request/reply carrying the SDK's envelopes as opaque bytes (a pre-encoded
/// request, a pre-encoded response): the same bytes on the wire as the SDK, none of its
/// work. The gap between this and plain `raw` is what the contract's envelope costs the
/// server and the sockets.
async fn raw_envelope_sized(url: &str) -> Figures {
    let (request, response) = encoded_envelopes(true);
    let server_side = async_nats::connect(url).await.unwrap();
    let mut subscriber = server_side
        .queue_subscribe("raw.sized", "raw".to_owned())
        .await
        .unwrap();
    let responder = tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            if let Some(reply) = message.reply {
                server_side.publish(reply, response.clone()).await.unwrap();
            }
        }
    });
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(url)
        .await
        .unwrap();
    client.flush().await.unwrap();
    let figures = measure(move || {
        let client = client.clone();
        let request = request.clone();
        async move {
            client.request("raw.sized", request).await.unwrap();
        }
    })
    .await;
    responder.abort();
    figures
}

/// A request and a response envelope as the SDK sends them for the benchmark's call.
/// With `correlate`, the response names the request as the SDK's do; without, it names
/// none, so that SDK clients accept it as the reply to any call.
fn encoded_envelopes(correlate: bool) -> (bytes::Bytes, bytes::Bytes) {
    let echo = || Echo {
        message: "hello".into(),
    };
    let mut request = aegis_sdk::domain::RpcRequest::new("echo", echo());
    request.target = Some("bench".into());
    let response = aegis_sdk::domain::RpcResponse::ok(
        correlate.then(|| request.message_id.clone()),
        Some(request.trace_id.clone()),
        echo(),
    );
    let mut response = response;
    response.source = Some("bench-0123abcd".into());
    (
        bytes::Bytes::from(rmp_serde::to_vec_named(&request).unwrap()),
        bytes::Bytes::from(rmp_serde::to_vec_named(&response).unwrap()),
    )
}

/// The SDK's client against a raw responder that answers every call with one
/// pre-encoded response envelope: what the client side costs.
async fn sdk_client_only(url: &str) -> Figures {
    let server_side = async_nats::connect(url).await.unwrap();
    let mut subscriber = server_side
        .queue_subscribe("rpc.bench.echo", "rpc.bench".to_owned())
        .await
        .unwrap();
    let (_, response) = encoded_envelopes(false);
    let responder = tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            if let Some(reply) = message.reply {
                server_side.publish(reply, response.clone()).await.unwrap();
            }
        }
    });
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    client.transport().flush().await.unwrap();
    let figures = measure(move || {
        let client = client.clone();
        async move {
            let _: Echo = client
                .call(
                    "bench",
                    "echo",
                    Echo {
                        message: "hello".into(),
                    },
                )
                .timeout(Duration::from_secs(10))
                .await
                .unwrap();
        }
    })
    .await;
    responder.abort();
    figures
}

/// A raw requester sending one pre-encoded request envelope to the SDK's service: what
/// the service side costs.
async fn sdk_service_only(url: &str) -> Figures {
    let service_client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    let service = Service::builder("bench")
        .rpc("echo", |_: RpcContext, p: Echo| async move {
            Ok::<_, HandlerError>(p)
        })
        .build()
        .unwrap();
    service.start(&service_client).await.unwrap();
    let (request, _) = encoded_envelopes(true);
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(url)
        .await
        .unwrap();
    let figures = measure(move || {
        let client = client.clone();
        let request = request.clone();
        async move {
            client.request("rpc.bench.echo", request).await.unwrap();
        }
    })
    .await;
    service.stop().await.unwrap();
    figures
}

async fn sdk(url: &str) -> Figures {
    let service_client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    let service = Service::builder("bench")
        .rpc("echo", |_: RpcContext, p: Echo| async move {
            Ok::<_, HandlerError>(p)
        })
        .build()
        .unwrap();
    service.start(&service_client).await.unwrap();
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    let figures = measure(move || {
        let client = client.clone();
        async move {
            let _: Echo = client
                .call(
                    "bench",
                    "echo",
                    Echo {
                        message: "hello".into(),
                    },
                )
                .timeout(Duration::from_secs(10))
                .await
                .unwrap();
        }
    })
    .await;
    service.stop().await.unwrap();
    figures
}

/// Rounds of raw and SDK, alternating, so that a machine busier at one moment than at
/// another does not favour either side; each figure is the median over the rounds.
const ROUNDS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let server = NatsServer::start();
    if let Some(pid) = server.pid() {
        let _ = SERVER_PID.set(pid.to_string());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let (raw, sdk, raw_traced, metered) = runtime.block_on(async {
        let mut raws = Vec::new();
        let mut sdks = Vec::new();
        let mut traced = Vec::new();
        let mut metered = Vec::new();
        // For profiling one side: AEGIS_BENCH_ONLY=raw, sdk or metered repeats that side only.
        let only = std::env::var("AEGIS_BENCH_ONLY").unwrap_or_default();
        for round in 0..ROUNDS {
            if only.is_empty() {
                // Raw, SDK, SDK with metrics on, in the same rounds so that all see the
                // same machine; the order flips every other round, so that neither
                // going first nor going last favours a side.
                let flipped = round % 2 == 1;
                if flipped {
                    Metrics::enable();
                    metered.push(sdk_metered(&url).await);
                    Metrics::disable();
                    sdks.push(sdk(&url).await);
                    raws.push(raw(&url, false).await);
                } else {
                    raws.push(raw(&url, false).await);
                    sdks.push(sdk(&url).await);
                    Metrics::enable();
                    metered.push(sdk_metered(&url).await);
                    Metrics::disable();
                }
                traced.push(raw(&url, true).await);
                continue;
            }
            if only == "metered" {
                // Profiling the SDK with metrics on: both sides metered.
                Metrics::enable();
                raws.push(sdk_metered(&url).await);
                sdks.push(sdk_metered(&url).await);
                continue;
            }
            raws.push(if only == "sdk" {
                sdk(&url).await
            } else {
                raw(&url, false).await
            });
            sdks.push(if only == "raw" {
                raw(&url, false).await
            } else {
                sdk(&url).await
            });
        }
        if std::env::var_os("AEGIS_BENCH_SIDES").is_some() {
            let client_only = sdk_client_only(&url).await;
            let service_only = sdk_service_only(&url).await;
            let sized = raw_envelope_sized(&url).await;
            for (name, f) in [
                ("raw, envelope-sized payloads", sized),
                ("SDK client, raw responder", client_only),
                ("raw requester, SDK service", service_only),
            ] {
                println!(
                    "{name}: p50 {:.1} us, 64 in flight {:.0}/s, 256 in flight {:.0}/s, \
                     CPU {:.1} us + server {:.1} us",
                    f.p50.as_secs_f64() * 1e6,
                    f.rate_64,
                    f.rate_256,
                    f.cpu_per_call.as_secs_f64() * 1e6,
                    f.server_cpu_per_call.as_secs_f64() * 1e6
                );
            }
        }
        (raws, sdks, traced, metered)
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pick =
        |figures: &[Figures], f: &dyn Fn(&Figures) -> f64| median(figures.iter().map(f).collect());

    println!(
        "RPC benchmark ({SEQUENTIAL_CALLS} sequential calls, {THROUGHPUT_CALLS} calls per \
         throughput run, medians of {ROUNDS} alternating rounds)"
    );
    println!(
        "{:<32} {:>14} {:>14} {:>10}",
        "", "raw async-nats", "aegis-sdk", "ratio"
    );
    let row = |name: &str, f: &dyn Fn(&Figures) -> f64, unit: &str| {
        let (r, s) = (pick(&raw, f), pick(&sdk, f));
        println!(
            "{name:<32} {r:>11.1} {unit:<2} {s:>11.1} {unit:<2} {:>10.2}",
            s / r
        );
        (r, s)
    };
    let (raw_p50, sdk_p50) = row("sequential p50", &|f| us(f.p50), "us");
    row("sequential p99", &|f| us(f.p99), "us");
    let (raw_64, sdk_64) = row("throughput, 64 in flight", &|f| f.rate_64, "/s");
    row("throughput, 256 in flight", &|f| f.rate_256, "/s");
    row("CPU per call, this process", &|f| us(f.cpu_per_call), "us");
    row(
        "CPU per call, nats-server",
        &|f| us(f.server_cpu_per_call),
        "us",
    );
    println!(
        "p50 difference: {:+.1} us (target <= +15 us); 64-in-flight ratio {:.2} (target >= 0.90)",
        sdk_p50 - raw_p50,
        sdk_64 / raw_64
    );
    if raw_traced.is_empty() {
        return;
    }
    println!(
        "raw with a traceparent header per request: 64 in flight {:.1} /s, CPU per call {:.1} us",
        pick(&raw_traced, &|f| f.rate_64),
        pick(&raw_traced, &|f| us(f.cpu_per_call))
    );

    println!();
    println!("metrics on (both sides recording), medians of the same {ROUNDS} rounds");
    println!(
        "{:<32} {:>14} {:>14} {:>10}",
        "", "metrics off", "metrics on", "ratio"
    );
    let versus = |name: &str, f: &dyn Fn(&Figures) -> f64, unit: &str| {
        let (off, on) = (pick(&sdk, f), pick(&metered, f));
        println!(
            "{name:<32} {off:>11.1} {unit:<2} {on:>11.1} {unit:<2} {:>10.2}",
            on / off
        );
        (off, on)
    };
    versus("sequential p50", &|f| us(f.p50), "us");
    versus("sequential p99", &|f| us(f.p99), "us");
    versus("throughput, 64 in flight", &|f| f.rate_64, "/s");
    versus("throughput, 256 in flight", &|f| f.rate_256, "/s");
    let (off, on) = versus("CPU per call, this process", &|f| us(f.cpu_per_call), "us");
    println!(
        "CPU per call with metrics: {:+.1}% (target <= +5%)",
        (on / off - 1.0) * 100.0
    );
}

/// The SDK run with metrics on; the snapshot proves they recorded.
async fn sdk_metered(url: &str) -> Figures {
    let before = served();
    let figures = sdk(url).await;
    assert!(served() > before, "metrics did not record");
    figures
}

fn served() -> u64 {
    Metrics::global().snapshot().counter(
        "aegis_rpc_server_requests_total",
        &[("service", "bench"), ("method", "echo")],
    )
}
