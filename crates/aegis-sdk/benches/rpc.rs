//! RPC benchmark: this SDK against raw async-nats request/reply, in one run, against one
//! local nats-server started here.
//!
//! ```text
//! cargo bench -p aegis-sdk --bench rpc
//! ```
//!
//! Prints sequential p50/p99, throughput at 64 and 256 calls in flight, CPU time per
//! call (both ends; nats-server counted apart) and the SDK/raw ratios for three
//! layouts: caller and service in two processes, both on one thread of one process, and
//! the contract's least (raw async-nats plus the wire contract's envelopes, what any
//! implementation of the contract must at least do); then the SDK with metrics off and
//! on. Each process runs a current-thread runtime: the server takes about one of our
//! two cores, and one runtime thread per process measured best here.
//!
//! `AEGIS_BENCH_ONLY=ends` instead runs raw, the contract's least, the SDK, and each end
//! of the SDK against the other end of the least, in alternating rounds: which end
//! costs what (`=latency`: their sequential p50 only). `=raw`, `=sdk` or `=metered`
//! repeats one side, for a profiler.

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

/// The pid of the responder process, while one runs (see [`Responder`]).
static RESPONDER_PID: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn responder_pid() -> Option<String> {
    RESPONDER_PID.lock().unwrap().clone()
}

/// CPU time of this process so far (see [`cpu::cpu_time_of`]), plus the responder
/// process's while one runs: both ends of the calls.
fn cpu_time() -> Duration {
    cpu::cpu_time_of("self") + responder_pid().map_or(Duration::ZERO, |pid| cpu::cpu_time_of(&pid))
}

fn runs() -> u64 {
    cpu::runs_of("self") + responder_pid().map_or(0, |pid| cpu::runs_of(&pid))
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
    /// Times this process and nats-server were put on a CPU, per call at 64 in flight.
    runs_per_call: (f64, f64),
}

/// The nats-server's pid, for its CPU time.
static SERVER_PID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn server_cpu_time() -> Duration {
    SERVER_PID
        .get()
        .map_or(Duration::ZERO, |pid| cpu::cpu_time_of(pid))
}

fn server_runs() -> u64 {
    SERVER_PID.get().map_or(0, |pid| cpu::runs_of(pid))
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
    if SEQUENTIAL_ONLY.load(Ordering::Relaxed) {
        return Figures {
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            rate_64: 0.0,
            rate_256: 0.0,
            cpu_per_call: Duration::ZERO,
            server_cpu_per_call: Duration::ZERO,
            runs_per_call: (0.0, 0.0),
        };
    }

    let mut rates = Vec::new();
    let mut cpu_per_call = Duration::ZERO;
    let mut server_cpu_per_call = Duration::ZERO;
    let mut runs_per_call = (0.0, 0.0);
    for in_flight in [64usize, 256] {
        let remaining = Arc::new(AtomicUsize::new(THROUGHPUT_CALLS));
        let cpu_before = cpu_time();
        let server_before = server_cpu_time();
        let runs_before = (runs(), server_runs());
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
            let calls = THROUGHPUT_CALLS as f64;
            runs_per_call = (
                (runs() - runs_before.0) as f64 / calls,
                (server_runs() - runs_before.1) as f64 / calls,
            );
        }
    }
    Figures {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        rate_64: rates[0],
        rate_256: rates[1],
        cpu_per_call,
        server_cpu_per_call,
        runs_per_call,
    }
}

/// Raw request/reply; with `traceparent`, each request carries a fresh one, as the
/// SDK's do, to show what the header costs at the transport alone.
async fn raw(url: &str, traceparent: bool, layout: Layout) -> Figures {
    let responder = match layout {
        Layout::OneThread => Err(tokio::spawn(raw_responder(url.to_owned()).await)),
        Layout::Apart => Ok(Responder::start("raw", url)),
    };
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
    if let Err(task) = responder {
        task.abort();
    }
    figures
}

/// Starts answering `raw.echo` with the request's payload; the returned future serves.
async fn raw_responder(url: String) -> impl std::future::Future<Output = ()> {
    let server_side = async_nats::connect(url).await.unwrap();
    let mut subscriber = server_side
        .queue_subscribe("raw.echo", "raw".to_owned())
        .await
        .unwrap();
    server_side.flush().await.unwrap();
    async move {
        while let Some(message) = subscriber.next().await {
            if let Some(reply) = message.reply {
                server_side.publish(reply, message.payload).await.unwrap();
            }
        }
    }
}

/// The least any implementation of the wire contract does per call: raw async-nats
/// carrying the contract's request and response envelopes, each encoded and decoded with
/// plain serde structs (a fresh message id, timestamp and trace id per envelope, the
/// correlation id checked, the params and result typed), and nothing else: no names
/// checked, no spans, no dispatch. What the SDK adds beyond this is its own.
async fn floor(url: &str, layout: Layout) -> Figures {
    let responder = match layout {
        Layout::OneThread => Err(tokio::spawn(
            floor_responder(url.to_owned(), "floor.echo").await,
        )),
        Layout::Apart => Ok(Responder::start("floor", url)),
    };
    let figures = floor_calls(url, "floor.echo").await;
    if let Err(task) = responder {
        task.abort();
    }
    figures
}

/// [`floor`]'s caller, calling `subject`.
async fn floor_calls(url: &str, subject: &'static str) -> Figures {
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(url)
        .await
        .unwrap();
    client.flush().await.unwrap();
    measure(move || {
        let client = client.clone();
        async move {
            let message_id = aegis_sdk::domain::envelope::new_id();
            let trace_id = aegis_sdk::domain::envelope::new_id();
            let timestamp = aegis_sdk::domain::envelope::now_timestamp();
            let params = Echo {
                message: "hello".into(),
            };
            let request = FloorRequest {
                message_id: &message_id,
                trace_id: &trace_id,
                correlation_id: None,
                timestamp: &timestamp,
                source: None,
                target: Some("bench"),
                method: "echo",
                params: &params,
                timeout: 10.0,
            };
            let payload = rmp_serde::to_vec_named(&request).unwrap();
            let reply = client.request(subject, payload.into()).await.unwrap();
            let response: FloorResponseIn = rmp_serde::from_slice(&reply.payload).unwrap();
            assert!(response.success && response.correlation_id == Some(&message_id));
            let _: Echo = response.result.unwrap();
        }
    })
    .await
}

/// Starts answering `floor.echo` as [`floor`] describes; the returned future serves.
async fn floor_responder(
    url: String,
    subject: &'static str,
) -> impl std::future::Future<Output = ()> {
    let server_side = async_nats::connect(url).await.unwrap();
    let mut subscriber = server_side
        .queue_subscribe(subject, "floor".to_owned())
        .await
        .unwrap();
    server_side.flush().await.unwrap();
    async move {
        while let Some(message) = subscriber.next().await {
            let Some(reply) = message.reply else { continue };
            let request: FloorRequestIn = rmp_serde::from_slice(&message.payload).unwrap();
            assert_eq!(request.method, "echo");
            let message_id = aegis_sdk::domain::envelope::new_id();
            let timestamp = aegis_sdk::domain::envelope::now_timestamp();
            let response = FloorResponse {
                message_id: &message_id,
                trace_id: request.trace_id,
                correlation_id: Some(request.message_id),
                timestamp: &timestamp,
                source: Some("bench-0123abcd"),
                target: None,
                success: true,
                result: Some(&request.params),
                error: None,
            };
            let payload = rmp_serde::to_vec_named(&response).unwrap();
            server_side.publish(reply, payload.into()).await.unwrap();
        }
    }
}

#[derive(Serialize)]
struct FloorRequest<'a> {
    message_id: &'a str,
    trace_id: &'a str,
    correlation_id: Option<&'a str>,
    timestamp: &'a str,
    source: Option<&'a str>,
    target: Option<&'a str>,
    method: &'a str,
    params: &'a Echo,
    timeout: f64,
}

#[derive(Deserialize)]
struct FloorRequestIn<'a> {
    message_id: &'a str,
    trace_id: &'a str,
    method: &'a str,
    params: Echo,
}

#[derive(Serialize)]
struct FloorResponse<'a> {
    message_id: &'a str,
    trace_id: &'a str,
    correlation_id: Option<&'a str>,
    timestamp: &'a str,
    source: Option<&'a str>,
    target: Option<&'a str>,
    success: bool,
    result: Option<&'a Echo>,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
struct FloorResponseIn<'a> {
    correlation_id: Option<&'a str>,
    success: bool,
    result: Option<Echo>,
}

/// Each end of the SDK alone against the other end of the contract's least
/// (`AEGIS_BENCH_ONLY=ends`; `=latency` measures sequential calls only): which end adds
/// what.
async fn latency_sides(url: &str, sequential_only: bool) {
    SEQUENTIAL_ONLY.store(sequential_only, Ordering::Relaxed);
    let mut all: [Vec<Figures>; 5] = Default::default();
    let names = [
        "raw",
        "raw+envelopes",
        "sdk",
        "sdk client, raw+envelopes responder",
        "raw+envelopes caller, sdk service",
    ];
    for round in 0..10 {
        let mut steps = [0, 1, 2, 3, 4];
        if round % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            let figures = match step {
                0 => raw(url, false, Layout::OneThread).await,
                1 => floor(url, Layout::OneThread).await,
                2 => sdk(url, Layout::OneThread).await,
                3 => {
                    let responder =
                        tokio::spawn(floor_responder(url.to_owned(), "rpc.bench.echo").await);
                    let figures = sdk_calls(url).await;
                    responder.abort();
                    figures
                }
                _ => {
                    let service = sdk_service(url).await;
                    let figures = floor_calls(url, "rpc.bench.echo").await;
                    service.stop().await.unwrap();
                    figures
                }
            };
            all[step].push(figures);
        }
    }
    for (name, figures) in names.iter().zip(all) {
        print!("{name:<40} p50 {:>7.1} us", pick(&figures, &|f| us(f.p50)));
        if !sequential_only {
            print!(
                ", 64 in flight {:>9.1} /s, CPU per call {:.2} us + server {:.2} us",
                pick(&figures, &|f| f.rate_64),
                pick(&figures, &|f| us(f.cpu_per_call)),
                pick(&figures, &|f| us(f.server_cpu_per_call)),
            );
        }
        println!();
    }
}

static SEQUENTIAL_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The service of the SDK side, started.
async fn sdk_service(url: &str) -> Service {
    let service_client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    let service = Service::builder("bench")
        .rpc("echo", |_: RpcContext, p: Echo| async move {
            Ok::<_, HandlerError>(p)
        })
        .build()
        .unwrap();
    service.start(&service_client).await.unwrap();
    service
}

/// Where the responder runs: on the caller's thread, or in a process of its own.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Caller and responder share this process and its one runtime thread, so that
    /// every cost of both ends is paid one after the other on one thread.
    OneThread,
    /// The responder is a second process, as a service is in production.
    Apart,
}

/// A responder in a process of its own: this benchmark's binary started again with
/// `AEGIS_BENCH_RESPONDER` set (see [`serve_as_responder`]). While it runs, its CPU time
/// counts with ours. Dropping it ends it.
struct Responder {
    child: std::process::Child,
}

impl Responder {
    fn start(kind: &str, url: &str) -> Responder {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("AEGIS_BENCH_RESPONDER", kind)
            .env("AEGIS_BENCH_URL", url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the responder process did not start");
        *RESPONDER_PID.lock().unwrap() = Some(child.id().to_string());
        Responder { child }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        *RESPONDER_PID.lock().unwrap() = None;
        // End of input tells it to stop.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The responder process: serves `kind` ("raw" or "sdk") on its own current-thread
/// runtime until its standard input closes.
fn serve_as_responder(kind: &str) {
    let url = std::env::var("AEGIS_BENCH_URL").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut service = None;
        let mut serving = None;
        match kind {
            "raw" => serving = Some(tokio::spawn(raw_responder(url).await)),
            "floor" => serving = Some(tokio::spawn(floor_responder(url, "floor.echo").await)),
            _ => service = Some(sdk_service(&url).await),
        }
        println!("ready");
        let _ = tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest)
        })
        .await;
        if let Some(service) = service {
            service.stop().await.unwrap();
        }
        if let Some(task) = serving {
            task.abort();
        }
    });
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
    let service = sdk_service(url).await;
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

async fn sdk(url: &str, layout: Layout) -> Figures {
    let service = match layout {
        Layout::OneThread => Ok(sdk_service(url).await),
        Layout::Apart => Err(Responder::start("sdk", url)),
    };
    let figures = sdk_calls(url).await;
    if let Ok(service) = service {
        service.stop().await.unwrap();
    }
    figures
}

/// The SDK's caller, calling `bench.echo`.
async fn sdk_calls(url: &str) -> Figures {
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    measure(move || {
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
    .await
}

/// Rounds of raw and SDK, alternating, so that a machine busier at one moment than at
/// another does not favour either side; each figure is the median over the rounds.
const ROUNDS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The figures of every configuration, one entry per round.
#[derive(Default)]
struct Rounds {
    raw_apart: Vec<Figures>,
    sdk_apart: Vec<Figures>,
    raw_one: Vec<Figures>,
    sdk_one: Vec<Figures>,
    floor_apart: Vec<Figures>,
    floor_one: Vec<Figures>,
    metered: Vec<Figures>,
    traced: Vec<Figures>,
}

fn main() {
    if let Ok(kind) = std::env::var("AEGIS_BENCH_RESPONDER") {
        serve_as_responder(&kind);
        return;
    }
    let server = NatsServer::start();
    if let Some(pid) = server.pid() {
        let _ = SERVER_PID.set(pid.to_string());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let rounds = runtime.block_on(async {
        let mut rounds = Rounds::default();
        // For profiling one side: AEGIS_BENCH_ONLY=raw, sdk or metered repeats that side
        // only, on one thread (AEGIS_BENCH_LAYOUT=apart for two processes).
        let only = std::env::var("AEGIS_BENCH_ONLY").unwrap_or_default();
        let layout = match std::env::var("AEGIS_BENCH_LAYOUT").as_deref() {
            Ok("apart") => Layout::Apart,
            _ => Layout::OneThread,
        };
        if only == "latency" || only == "ends" {
            latency_sides(&url, only == "latency").await;
            std::process::exit(0);
        }
        for round in 0..ROUNDS {
            if only.is_empty() {
                // Every configuration in the same rounds, so that all see the same
                // machine; the order flips every other round, so that neither going
                // first nor going last favours one.
                let mut steps = [0, 1, 2, 3, 4, 5, 6];
                if round % 2 == 1 {
                    steps.reverse();
                }
                for step in steps {
                    match step {
                        0 => rounds.raw_apart.push(raw(&url, false, Layout::Apart).await),
                        1 => rounds.sdk_apart.push(sdk(&url, Layout::Apart).await),
                        2 => rounds
                            .raw_one
                            .push(raw(&url, false, Layout::OneThread).await),
                        3 => rounds.sdk_one.push(sdk(&url, Layout::OneThread).await),
                        4 => rounds.floor_apart.push(floor(&url, Layout::Apart).await),
                        5 => rounds.floor_one.push(floor(&url, Layout::OneThread).await),
                        _ => {
                            Metrics::enable();
                            rounds.metered.push(sdk_metered(&url).await);
                            Metrics::disable();
                        }
                    }
                }
                rounds.traced.push(raw(&url, true, Layout::OneThread).await);
                continue;
            }
            let side = |name: &str| {
                let url = url.clone();
                let name = name.to_owned();
                async move {
                    match name.as_str() {
                        "sdk" => sdk(&url, layout).await,
                        "floor" => floor(&url, layout).await,
                        // One end of the SDK against the other end of the floor.
                        "service" => {
                            let service = sdk_service(&url).await;
                            let figures = floor_calls(&url, "rpc.bench.echo").await;
                            service.stop().await.unwrap();
                            figures
                        }
                        "client" => {
                            let responder = floor_responder(url.clone(), "rpc.bench.echo").await;
                            let responder = tokio::spawn(responder);
                            let figures = sdk_calls(&url).await;
                            responder.abort();
                            figures
                        }
                        "metered" => {
                            // Profiling the SDK with metrics on.
                            Metrics::enable();
                            sdk_metered(&url).await
                        }
                        _ => raw(&url, false, layout).await,
                    }
                }
            };
            rounds.raw_one.push(side(&only).await);
            rounds.sdk_one.push(side(&only).await);
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
                     CPU {:.1} us + server {:.1} us, runs per call {:.3} + server {:.3}",
                    f.p50.as_secs_f64() * 1e6,
                    f.rate_64,
                    f.rate_256,
                    f.cpu_per_call.as_secs_f64() * 1e6,
                    f.server_cpu_per_call.as_secs_f64() * 1e6,
                    f.runs_per_call.0,
                    f.runs_per_call.1,
                );
            }
        }
        rounds
    });

    println!(
        "RPC benchmark ({SEQUENTIAL_CALLS} sequential calls, {THROUGHPUT_CALLS} calls per \
         throughput run, medians of {ROUNDS} alternating rounds, one nats-server)"
    );
    if !rounds.raw_apart.is_empty() {
        println!();
        println!("caller and service in two processes, as deployed");
        table(
            &rounds.raw_apart,
            &rounds.sdk_apart,
            ("raw async-nats", "aegis-sdk"),
        );
        println!("the contract's least, same layout:");
        table(
            &rounds.raw_apart,
            &rounds.floor_apart,
            ("raw async-nats", "raw+envelopes"),
        );
    }
    println!();
    println!("caller and service on one thread of one process");
    table(
        &rounds.raw_one,
        &rounds.sdk_one,
        ("raw async-nats", "aegis-sdk"),
    );
    if !rounds.floor_one.is_empty() {
        println!("the contract's least, same layout:");
        table(
            &rounds.raw_one,
            &rounds.floor_one,
            ("raw async-nats", "raw+envelopes"),
        );
    }
    if rounds.traced.is_empty() {
        return;
    }
    println!(
        "raw with a traceparent header per request: 64 in flight {:.1} /s, CPU per call {:.1} us",
        pick(&rounds.traced, &|f| f.rate_64),
        pick(&rounds.traced, &|f| us(f.cpu_per_call))
    );

    println!();
    println!("metrics off and on, one thread, medians of the same {ROUNDS} rounds");
    let (off, on) = table(
        &rounds.sdk_one,
        &rounds.metered,
        ("metrics off", "metrics on"),
    );
    println!(
        "CPU per call with metrics: {:+.1}% (target <= +5%)",
        (on.cpu / off.cpu - 1.0) * 100.0
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pick(figures: &[Figures], f: &dyn Fn(&Figures) -> f64) -> f64 {
    median(figures.iter().map(f).collect())
}

/// Medians of one configuration, as [`table`] prints them.
struct Medians {
    cpu: f64,
}

/// Prints the medians of `base` and `other` side by side with their ratios, and the
/// verdict against the targets; returns each side's CPU per call.
fn table(base: &[Figures], other: &[Figures], names: (&str, &str)) -> (Medians, Medians) {
    println!("{:<32} {:>14} {:>14} {:>10}", "", names.0, names.1, "ratio");
    let row = |name: &str, f: &dyn Fn(&Figures) -> f64, unit: &str| {
        let (r, s) = (pick(base, f), pick(other, f));
        println!(
            "{name:<32} {r:>11.1} {unit:<2} {s:>11.1} {unit:<2} {:>10.2}",
            s / r
        );
        (r, s)
    };
    let (base_p50, other_p50) = row("sequential p50", &|f| us(f.p50), "us");
    row("sequential p99", &|f| us(f.p99), "us");
    let (base_64, other_64) = row("throughput, 64 in flight", &|f| f.rate_64, "/s");
    row("throughput, 256 in flight", &|f| f.rate_256, "/s");
    let (base_cpu, other_cpu) = row("CPU per call, both ends", &|f| us(f.cpu_per_call), "us");
    row(
        "CPU per call, nats-server",
        &|f| us(f.server_cpu_per_call),
        "us",
    );
    row(
        "thread runs per 100 calls, ends",
        &|f| 100.0 * f.runs_per_call.0,
        "",
    );
    row(
        "thread runs per 100 calls, server",
        &|f| 100.0 * f.runs_per_call.1,
        "",
    );
    println!(
        "p50 difference: {:+.1} us (target <= +15 us); 64-in-flight ratio {:.2} (target >= 0.90)",
        other_p50 - base_p50,
        other_64 / base_64
    );
    (Medians { cpu: base_cpu }, Medians { cpu: other_cpu })
}

/// The SDK run with metrics on; the snapshot proves they recorded.
async fn sdk_metered(url: &str) -> Figures {
    let before = served();
    let figures = sdk(url, Layout::OneThread).await;
    assert!(served() > before, "metrics did not record");
    figures
}

fn served() -> u64 {
    Metrics::global().snapshot().counter(
        "aegis_rpc_server_requests_total",
        &[("service", "bench"), ("method", "echo")],
    )
}
