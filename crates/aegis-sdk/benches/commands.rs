//! Command round trip and throughput, side by side with a raw async-nats work queue.
//!
//! ```text
//! cargo bench -p aegis-sdk --bench commands
//! ```
//!
//! Starts its own nats-server (aegis-test-support). Everything runs on one
//! current-thread runtime, which beats the multi-thread one on a 2-core machine where
//! the server needs a core of its own.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use aegis_sdk::application::commands::WorkerOptions;
use aegis_sdk::{Client, CommandContext, ConnectOptions, HandlerError, Service};
use aegis_test_support::NatsServer;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use serde_json::{json, Value};

const ROUND_TRIPS: usize = 2_000;
const THROUGHPUT_COMMANDS: usize = 5_000;
const IN_FLIGHT: usize = 64;

struct Latency {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A raw work queue: a worker pulls, acks and replies on core NATS.
async fn raw_worker(js: jetstream::Context, consumer: &str) {
    let stream = js.get_stream("RAW_WQ").await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream.get_consumer(consumer).await.unwrap();
    let client = js.client();
    let mut messages = consumer.messages().await.unwrap();
    while let Some(Ok(message)) = messages.next().await {
        let reply = format!("raw.reply.{}", String::from_utf8_lossy(&message.payload));
        message.ack().await.unwrap();
        client
            .publish(reply, message.payload.clone())
            .await
            .unwrap();
    }
}

async fn raw_setup(url: &str) -> (async_nats::Client, jetstream::Context) {
    let nats = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(nats.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "RAW_WQ".into(),
            subjects: vec!["rawwq.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    (nats, js)
}

async fn raw_round_trip(url: &str) -> (Latency, f64) {
    let (nats, js) = raw_setup(url).await;
    for _ in 0..2 {
        let worker_js = jetstream::new(async_nats::connect(url).await.unwrap());
        tokio::spawn(async move { raw_worker(worker_js, "raw").await });
    }
    let mut replies = nats.subscribe("raw.reply.>").await.unwrap();
    nats.flush().await.unwrap();

    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 100 {
        let started = Instant::now();
        js.publish("rawwq.job", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        replies.next().await.unwrap();
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }

    // Throughput: IN_FLIGHT publishes outstanding at a time, two workers.
    let started = Instant::now();
    let mut sent = 0;
    let mut received = 0;
    while sent < IN_FLIGHT.min(THROUGHPUT_COMMANDS) {
        js.publish("rawwq.job", sent.to_string().into())
            .await
            .unwrap();
        sent += 1;
    }
    while received < THROUGHPUT_COMMANDS {
        replies.next().await.unwrap();
        received += 1;
        if sent < THROUGHPUT_COMMANDS {
            js.publish("rawwq.job", sent.to_string().into())
                .await
                .unwrap();
            sent += 1;
        }
    }
    let rate = THROUGHPUT_COMMANDS as f64 / started.elapsed().as_secs_f64();
    (percentiles(samples), rate)
}

async fn sdk_round_trip(url: &str) -> (Latency, f64) {
    let options = WorkerOptions::default().concurrency(32).lookahead(32);
    let mut services = Vec::new();
    for i in 0..2 {
        let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
        let service = Service::builder("bench")
            .instance_id(format!("bench-{i}"))
            .on_command_with(
                "echo",
                options.clone(),
                |_: CommandContext, p: Value| async move { Ok::<_, HandlerError>(p) },
            )
            .build()
            .unwrap();
        service.start(&client).await.unwrap();
        services.push(service);
    }
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();

    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    let mut send_samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 100 {
        let started = Instant::now();
        let handle = client
            .send_command("bench", "echo", json!({"i": i}))
            .await
            .unwrap();
        let sent = started.elapsed();
        let result: Value = handle.result().await.unwrap();
        assert_eq!(result["i"], i);
        if i >= 100 {
            samples.push(started.elapsed());
            send_samples.push(sent);
        }
    }

    let send = percentiles(send_samples);
    println!(
        "  (of which sending: p50 {:.0} us, p99 {:.0} us)",
        us(send.p50),
        us(send.p99)
    );

    let started = Instant::now();
    let results = futures::stream::iter(0..THROUGHPUT_COMMANDS)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .send_command("bench", "echo", json!({"i": i}))
                    .await
                    .unwrap()
                    .result::<Value>()
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .count()
        .await;
    assert_eq!(results, THROUGHPUT_COMMANDS);
    let rate = THROUGHPUT_COMMANDS as f64 / started.elapsed().as_secs_f64();

    for service in services {
        service.stop().await.unwrap();
    }
    (percentiles(samples), rate)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = NatsServer::start();
    let url = server.url();
    let total = Instant::now();

    let (raw, raw_rate) = runtime.block_on(raw_round_trip(&url));
    let (sdk, sdk_rate) = runtime.block_on(sdk_round_trip(&url));

    println!("command round trip ({ROUND_TRIPS} sequential; send, handle, result back)");
    println!(
        "  raw work queue  p50 {:>7.0} us  p99 {:>7.0} us",
        us(raw.p50),
        us(raw.p99)
    );
    println!(
        "  aegis command   p50 {:>7.0} us  p99 {:>7.0} us   (x{:.2} / x{:.2} of raw)",
        us(sdk.p50),
        us(sdk.p99),
        sdk.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        sdk.p99.as_secs_f64() / raw.p99.as_secs_f64()
    );
    println!("throughput ({THROUGHPUT_COMMANDS} commands, {IN_FLIGHT} in flight, 2 workers)");
    println!("  raw work queue  {raw_rate:>9.0} /s");
    println!(
        "  aegis command   {sdk_rate:>9.0} /s   (x{:.2} of raw)",
        sdk_rate / raw_rate
    );
    println!(
        "target: aegis p50 < 1000 us; total {:.1} s",
        total.elapsed().as_secs_f64()
    );
}
