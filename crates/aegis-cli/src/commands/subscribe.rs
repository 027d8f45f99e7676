//! `aegis subscribe PATTERN [--mode compete|broadcast]`: events as they arrive.
//!
//! The subscriber is a small service of its own (named by `--group`), so it takes part
//! in delivery exactly as a service would: in compete mode it shares the events with
//! every other subscriber of the same group, in broadcast mode it gets them all. An
//! event is acknowledged only once it is printed; events still on their way when the
//! subscriber stops are handed back to the stream for redelivery.

use aegis_sdk::application::events::{EventContext, EventSubscription, StartPolicy};
use aegis_sdk::domain::event_pattern::EventPattern;
use aegis_sdk::domain::Event;
use aegis_sdk::{DeliveryMode, HandlerError, Service};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::output::{print_json, CliError, CliResult, Limits};
use crate::Global;

/// Who gets each event (clap's spelling of [`DeliveryMode`]).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// Each event goes to one subscriber of the group; the group's consumer is durable
    /// (it stays on the server and resumes where the group left off).
    Compete,
    /// Each event goes to every subscriber.
    Broadcast,
}

/// Arguments of `aegis subscribe`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pattern, relative to `events.`: `order.created`, `order.*`, `order.>`.
    pattern: String,
    /// Delivery mode.
    #[arg(long, value_enum, default_value = "broadcast")]
    mode: Mode,
    /// The group (a service name) whose consumer to join; compete subscribers of one
    /// group share the events.
    #[arg(long, default_value = "aegis-cli")]
    group: String,
    /// Start with every event still in the stream instead of new ones only (for
    /// compete, only when the group's consumer is first created).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    limits: Limits,
}

/// One delivered event, and the way to tell its handler that it was printed.
type Delivery = (Value, oneshot::Sender<()>);

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    // `events.order.*` would follow `events.events.order.*`: almost surely not meant.
    if let Some(relative) = args.pattern.strip_prefix("events.") {
        return Err(CliError::usage(format!(
            "the pattern is relative to events.: write {relative} (it follows events.{relative})"
        )));
    }
    let pattern = EventPattern::new(args.pattern.as_str())?;
    let mode = match args.mode {
        Mode::Compete => DeliveryMode::Compete,
        Mode::Broadcast => DeliveryMode::Broadcast,
    };
    let (deliveries, mut received) = mpsc::channel::<Delivery>(1);
    let handler = move |ctx: EventContext, event: Event<Value>| {
        let deliveries = deliveries.clone();
        async move {
            let printed = oneshot::channel();
            let line = json!({
                "subject": ctx.subject(),
                "sequence": ctx.stream_sequence(),
                "attempt": ctx.attempt(),
                "domain": event.domain,
                "event_type": event.event_type,
                "message_id": event.message_id,
                "trace_id": event.trace_id,
                "timestamp": event.timestamp,
                "source": event.source,
                "version": event.version,
                "payload": event.payload,
            });
            // The subscriber stopped: hand the event back for redelivery.
            let gone = || HandlerError::msg("the subscriber stopped");
            deliveries
                .send((line, printed.0))
                .await
                .map_err(|_| gone())?;
            printed.1.await.map_err(|_| gone())
        }
    };
    let start = if args.all {
        StartPolicy::First
    } else {
        StartPolicy::New
    };
    let service = Service::builder(args.group.as_str())
        .events(
            EventSubscription::new(pattern.as_str(), mode, handler)
                .prefetch(1)
                .start_at(start),
        )
        .build()?;
    let client = global.connect_jetstream().await?;
    service.start(&client).await?;
    let stop = args.limits.stopped();
    tokio::pin!(stop);
    eprintln!(
        "subscribed to events.{} ({}, group {}); Ctrl-C to stop",
        pattern.as_str(),
        mode.as_str(),
        args.group
    );

    let mut seen = 0;
    while !args.limits.reached(seen) {
        let (event, printed) = tokio::select! {
            _ = &mut stop => break,
            delivery = received.recv() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        if global.json {
            print_json(&event);
        } else {
            println!(
                "{} {} #{} {}",
                event["timestamp"].as_str().unwrap_or("?"),
                event["subject"].as_str().unwrap_or("?"),
                event["sequence"],
                event["payload"]
            );
        }
        let _ = printed.send(());
        seen += 1;
    }
    // Whatever is still on its way goes back to the stream.
    drop(received);
    service.stop().await?;
    Ok(())
}
