//! Commands: a round trip (send, run, result back to the sender) with `send_command`
//! and a command worker, against a raw work queue whose worker pulls, acks and
//! replies on core NATS to an inbox the sender listens on.

use std::time::Duration;

use aegis_sdk::application::commands::WorkerOptions;
use aegis_sdk::domain::command_status::{consumer_name, STREAM};
use aegis_sdk::{CommandContext, HandlerError, Service};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::{compare, failed, raw_connect, Figures, Sizes};
use crate::output::CliResult;
use crate::Global;

/// The raw side's work-queue stream, removed when the run ends.
const RAW_STREAM: &str = "AEGIS_BENCH_RAW";
const REPLY_HEADER: &str = "Aegis-Bench-Reply";
const WAIT: Duration = Duration::from_secs(10);

pub(super) async fn run(global: &Global, sizes: Sizes) -> CliResult<(Figures, Figures)> {
    let nats = raw_connect(global).await?;
    let js = jetstream::new(nats.clone());
    let _ = js.delete_stream(RAW_STREAM).await;
    let queue = js
        .create_stream(stream::Config {
            name: RAW_STREAM.into(),
            subjects: vec!["aegis-bench-raw.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .map_err(|e| failed("raw", e))?;
    let pull: consumer::PullConsumer = queue
        .create_consumer(consumer::pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| failed("raw", e))?;
    let worker_nats = raw_connect(global).await?;
    let mut messages = pull.messages().await.map_err(|e| failed("raw", e))?;
    let raw_worker = tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            let reply = message
                .headers
                .as_ref()
                .and_then(|h| h.get(REPLY_HEADER))
                .map(|v| v.to_string());
            let _ = message.ack().await;
            if let Some(reply) = reply {
                let _ = worker_nats.publish(reply, message.payload.clone()).await;
            }
        }
    });

    // SDK: one worker with room for the whole in-flight window.
    let window = sizes.in_flight.clamp(1, 256);
    let options = WorkerOptions::default()
        .concurrency(window)
        .lookahead(window);
    let service = Service::builder("aegis-bench")
        .on_command_with("echo", options, |_: CommandContext, p: Value| async move {
            Ok::<_, HandlerError>(p)
        })
        .build()?;
    service.start(&global.connect().await?).await?;
    let client = global.connect().await?;

    let raw = move || {
        let (nats, js) = (nats.clone(), js.clone());
        async move {
            let inbox = nats.new_inbox();
            let mut reply = nats
                .subscribe(inbox.clone())
                .await
                .map_err(|e| failed("raw", e))?;
            let mut headers = HeaderMap::new();
            headers.insert(REPLY_HEADER, inbox.as_str());
            js.publish_with_headers("aegis-bench-raw.echo", headers, Bytes::from_static(b"{}"))
                .await
                .map_err(|e| failed("raw", e))?
                .await
                .map_err(|e| failed("raw", e))?;
            match tokio::time::timeout(WAIT, reply.next()).await {
                Ok(Some(_)) => Ok(()),
                _ => Err(failed("raw", "no reply from the raw worker")),
            }
        }
    };
    let sdk = move || {
        let client = client.clone();
        async move {
            let handle = client
                .send_command("aegis-bench", "echo", json!({}))
                .await
                .map_err(|e| failed("sdk", e))?;
            match tokio::time::timeout(WAIT, handle.result::<Value>()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(failed("sdk", e)),
                Err(_) => Err(failed("sdk", "no result within 10 s")),
            }
        }
    };
    let figures = compare(sizes, raw, sdk).await;

    // Leave the server as it was: no raw stream, no bench worker's consumer.
    raw_worker.abort();
    service.stop().await?;
    if let Ok(nats) = raw_connect(global).await {
        let _ = clean_up(&jetstream::new(nats)).await;
    }
    figures
}

async fn clean_up(js: &jetstream::Context) -> Result<(), async_nats::Error> {
    js.delete_stream(RAW_STREAM).await?;
    let commands = js.get_stream(STREAM).await?;
    commands
        .delete_consumer(&consumer_name("aegis-bench", "echo"))
        .await?;
    Ok(())
}
