//! Event throughput against one local nats-server, in one run:
//!
//! 1. pipelined publish: this SDK's `EventPublisher::send` against raw async-nats
//!    JetStream publish with the same window of acknowledgements in flight, the same
//!    envelope size and a `Nats-Msg-Id` on every message;
//! 2. publish-to-handler throughput of a compete subscription (default options: one
//!    handler at a time, in order).
//!
//! ```text
//! cargo bench -p aegis-sdk --bench events
//! ```
#![allow(clippy::print_stdout)]

#[path = "common/cpu.rs"]
mod cpu;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_sdk::application::events::{PendingEvent, PublisherOptions};
use aegis_sdk::domain::Event;
use aegis_sdk::{
    Client, ConnectOptions, DeliveryMode, Encoding, EventContext, EventPublisher, HandlerError,
    Service,
};
use aegis_test_support::NatsServer;
use async_nats::jetstream;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

type AckFuture = <jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture;

const WINDOW: usize = 4096;
const PER_RUN: usize = 20_000;
const PAIRS: usize = 8;
const HANDLED: usize = 20_000;

#[derive(Serialize, Deserialize, Clone)]
struct OrderCreated {
    order_id: String,
    amount: u64,
}

fn payload() -> OrderCreated {
    OrderCreated {
        order_id: "order-000001".to_owned(),
        amount: 4200,
    }
}

async fn raw_context(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(WINDOW)
        .backpressure_on_inflight(true)
        .build(client)
}

async fn raw_publish(js: &jetstream::Context, n: usize) -> f64 {
    // The same bytes the SDK sends: an encoded event envelope.
    let body: bytes::Bytes = Encoding::MessagePack
        .encode(&Event::new("bench", "created", payload()))
        .unwrap()
        .into();

    let started = Instant::now();
    let mut in_flight: FuturesUnordered<AckFuture> = FuturesUnordered::new();
    for i in 0..n {
        if in_flight.len() >= WINDOW {
            in_flight.next().await.unwrap().unwrap();
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(body.clone())
            .message_id(format!("raw-{i}-{}", started.elapsed().as_nanos()));
        let ack = js
            .send_publish("events.raw.created", publish)
            .await
            .unwrap();
        in_flight.push(ack.into_future());
    }
    while let Some(ack) = in_flight.next().await {
        ack.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn sdk_publish(publisher: &EventPublisher, n: usize) -> f64 {
    let started = Instant::now();
    let mut in_flight: FuturesUnordered<PendingEvent> = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= WINDOW {
            in_flight.next().await.unwrap().unwrap();
        }
        in_flight.push(publisher.send("bench", "created", payload()).await.unwrap());
    }
    while let Some(ack) = in_flight.next().await {
        ack.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn compete_throughput(server: &NatsServer, publisher: &EventPublisher) -> f64 {
    let handled = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let service = {
        let (handled, done) = (handled.clone(), done.clone());
        Service::builder("bench-consumer")
            .on_event(
                "load.*",
                DeliveryMode::Compete,
                move |_ctx: EventContext, _event: Event<OrderCreated>| {
                    if handled.fetch_add(1, Ordering::Relaxed) + 1 == HANDLED {
                        done.notify_one();
                    }
                    std::future::ready(Ok::<_, HandlerError>(()))
                },
            )
            .build()
            .unwrap()
    };
    let client = Client::connect(&ConnectOptions::new(server.url()))
        .await
        .unwrap();
    service.start(&client).await.unwrap();

    let started = Instant::now();
    let mut in_flight: FuturesUnordered<PendingEvent> = FuturesUnordered::new();
    for _ in 0..HANDLED {
        if in_flight.len() >= WINDOW {
            in_flight.next().await.unwrap().unwrap();
        }
        in_flight.push(publisher.send("load", "created", payload()).await.unwrap());
    }
    while let Some(ack) = in_flight.next().await {
        ack.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), done.notified())
        .await
        .expect("every event handled");
    let rate = HANDLED as f64 / started.elapsed().as_secs_f64();
    service.stop().await.unwrap();
    rate
}

/// CPU time this process used so far (see [`cpu::cpu_time_of`]).
fn cpu_time() -> Duration {
    cpu::cpu_time_of("self")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let server = NatsServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::connect(&ConnectOptions::new(server.url()))
            .await
            .unwrap();
        let publisher = EventPublisher::with_options(
            &client,
            PublisherOptions {
                max_in_flight: WINDOW,
                ..Default::default()
            },
        )
        .unwrap();
        let js = raw_context(&server).await;
        // Creates the stream and warms both paths up.
        sdk_publish(&publisher, 5_000).await;
        raw_publish(&js, 5_000).await;

        // The machine is shared, so throughput drifts over seconds: measure in short
        // alternating pairs (ABBA order) and compare within each pair.
        let (mut raw, mut sdk, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut raw_cpu, mut sdk_cpu) = (Duration::ZERO, Duration::ZERO);
        for pair in 0..PAIRS {
            let (r, s) = if pair % 2 == 0 {
                let before = cpu_time();
                let r = raw_publish(&js, PER_RUN).await;
                let middle = cpu_time();
                let s = sdk_publish(&publisher, PER_RUN).await;
                raw_cpu += middle - before;
                sdk_cpu += cpu_time() - middle;
                (r, s)
            } else {
                let before = cpu_time();
                let s = sdk_publish(&publisher, PER_RUN).await;
                let middle = cpu_time();
                let r = raw_publish(&js, PER_RUN).await;
                sdk_cpu += middle - before;
                raw_cpu += cpu_time() - middle;
                (r, s)
            };
            raw.push(r);
            sdk.push(s);
            ratios.push(s / r);
        }
        println!(
            "pipelined publish, window {WINDOW}, {PAIRS} alternating pairs of {PER_RUN} events, medians:"
        );
        println!("  raw async-nats JetStream: {:>10.0} msgs/s", median(raw));
        println!("  aegis-sdk EventPublisher: {:>10.0} msgs/s", median(sdk));
        println!("  ratio sdk/raw (per pair): {:>10.2}", median(ratios));
        let per_event = |cpu: Duration| cpu / (PAIRS * PER_RUN) as u32;
        println!(
            "  client CPU per event:     raw {:?}, sdk {:?}",
            per_event(raw_cpu),
            per_event(sdk_cpu)
        );

        let compete = compete_throughput(&server, &publisher).await;
        println!("compete mode, publish to handler, {HANDLED} events (concurrency 1, in order):");
        println!("  {compete:>10.0} events/s");
    });
}
