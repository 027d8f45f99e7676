//! Events: `EventPublisher::publish` (stored, acknowledged) against a raw JetStream
//! publish of an envelope of the same size with a deduplication id, into the same
//! `EVENTS` stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aegis_sdk::domain::Event;
use aegis_sdk::{Encoding, EventPublisher};
use async_nats::jetstream;
use bytes::Bytes;
use serde_json::json;

use super::{compare, failed, raw_connect, Figures, Sizes};
use crate::output::CliResult;
use crate::Global;

pub(super) async fn run(global: &Global, sizes: Sizes) -> CliResult<(Figures, Figures)> {
    let client = global.connect().await?;
    let publisher = EventPublisher::new(&client)?;
    // Creates the stream (if missing) before either side publishes.
    publisher
        .publish("aegis_bench", "sdk", json!({"n": 0}))
        .await?;

    let js = jetstream::new(raw_connect(global).await?);
    // The bytes the SDK sends: an encoded event envelope.
    let body = Bytes::from(Encoding::MessagePack.encode(&Event::new(
        "aegis_bench",
        "raw",
        json!({"n": 0}),
    ))?);
    let sequence = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();

    let raw = move || {
        let (js, body) = (js.clone(), body.clone());
        let n = sequence.fetch_add(1, Ordering::Relaxed);
        async move {
            let message = jetstream::message::PublishMessage::build()
                .payload(body)
                .message_id(format!("aegis-bench-{run_id}-{n}"));
            js.send_publish("events.aegis_bench.raw", message)
                .await
                .map_err(|e| failed("raw", e))?
                .await
                .map(|_| ())
                .map_err(|e| failed("raw", e))
        }
    };
    let sdk = move || {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish("aegis_bench", "sdk", json!({"n": 0}))
                .await
                .map(|_| ())
                .map_err(|e| failed("sdk", e))
        }
    };
    compare(sizes, raw, sdk).await
}
