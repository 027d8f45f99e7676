//! RPC benchmark: this SDK against raw async-nats request/reply, in one run, against one
//! local nats-server started here.
//!
//! ```text
//! cargo bench -p aegis-sdk --bench rpc
//! ```
//!
//! Prints sequential p50/p99, throughput at 64 and 256 calls in flight, process CPU time
//! per call (client and service share this process; nats-server is not counted), and
//! the SDK/raw ratios, then the SDK with metrics off and on side by side. Both sides run on a current-thread runtime: the server takes
//! about one of our two cores, and one runtime thread per process measured best here.

#![allow(clippy::print_stdout, missing_docs)]

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

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 10) // USER_HZ is 100 on Linux
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
}

impl Figures {
    /// The better of two runs, figure by figure.
    fn best(a: Figures, b: Figures) -> Figures {
        Figures {
            p50: a.p50.min(b.p50),
            p99: a.p99.min(b.p99),
            rate_64: a.rate_64.max(b.rate_64),
            rate_256: a.rate_256.max(b.rate_256),
            cpu_per_call: a.cpu_per_call.min(b.cpu_per_call),
        }
    }
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
    for in_flight in [64usize, 256] {
        let remaining = Arc::new(AtomicUsize::new(THROUGHPUT_CALLS));
        let cpu_before = cpu_time();
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
        rates.push(THROUGHPUT_CALLS as f64 / elapsed.as_secs_f64());
        if in_flight == 64 {
            cpu_per_call = cpu / THROUGHPUT_CALLS as u32;
        }
    }
    Figures {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        rate_64: rates[0],
        rate_256: rates[1],
        cpu_per_call,
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

fn main() {
    let server = NatsServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let (raw, raw_traced, sdk, metered) = runtime.block_on(async {
        let raw_traced = raw(&url, true).await;
        let raw = raw(&url, false).await;
        let plain = sdk(&url).await;
        // Metrics on, side by side: off and on alternate twice, and each keeps its best
        // CPU figure, since the machine is shared and one run can be unlucky.
        Metrics::enable();
        let metered = sdk_metered(&url).await;
        Metrics::disable();
        let sdk_again = sdk(&url).await;
        Metrics::enable();
        let metered_again = sdk_metered(&url).await;
        Metrics::disable();
        (
            raw,
            raw_traced,
            Figures::best(plain, sdk_again),
            Figures::best(metered, metered_again),
        )
    });

    println!("RPC benchmark ({SEQUENTIAL_CALLS} sequential calls, {THROUGHPUT_CALLS} calls per throughput run)");
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "raw async-nats", "aegis-sdk", "ratio"
    );
    let row = |name: &str, raw: f64, sdk: f64, unit: &str| {
        println!(
            "{name:<28} {:>11.1} {unit:<2} {:>11.1} {unit:<2} {:>10.2}",
            raw,
            sdk,
            sdk / raw
        );
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    row("sequential p50", us(raw.p50), us(sdk.p50), "us");
    row("sequential p99", us(raw.p99), us(sdk.p99), "us");
    row("throughput, 64 in flight", raw.rate_64, sdk.rate_64, "/s");
    row(
        "throughput, 256 in flight",
        raw.rate_256,
        sdk.rate_256,
        "/s",
    );
    row(
        "CPU per call (64 in flight)",
        us(raw.cpu_per_call),
        us(sdk.cpu_per_call),
        "us",
    );
    println!(
        "p50 difference: {:+.1} us (target <= +15 us); 64-in-flight ratio {:.2} (target >= 0.90)",
        us(sdk.p50) - us(raw.p50),
        sdk.rate_64 / raw.rate_64
    );
    println!(
        "raw with a traceparent header per request: 64 in flight {:.1} /s, CPU per call {:.1} us",
        raw_traced.rate_64,
        us(raw_traced.cpu_per_call)
    );

    println!();
    println!("metrics on (both sides recording), best of two alternating runs each");
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "metrics off", "metrics on", "ratio"
    );
    row("sequential p50", us(sdk.p50), us(metered.p50), "us");
    row("sequential p99", us(sdk.p99), us(metered.p99), "us");
    row(
        "throughput, 64 in flight",
        sdk.rate_64,
        metered.rate_64,
        "/s",
    );
    row(
        "throughput, 256 in flight",
        sdk.rate_256,
        metered.rate_256,
        "/s",
    );
    row(
        "CPU per call (64 in flight)",
        us(sdk.cpu_per_call),
        us(metered.cpu_per_call),
        "us",
    );
    println!(
        "CPU per call with metrics: {:+.1}% (target <= +5%); CPU is sampled in 10 ms ticks",
        (us(metered.cpu_per_call) / us(sdk.cpu_per_call) - 1.0) * 100.0
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
