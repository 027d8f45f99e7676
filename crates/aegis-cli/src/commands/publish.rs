//! `aegis publish DOMAIN.TYPE [JSON]`: one event into the `EVENTS` stream.

use aegis_sdk::domain::Event;
use aegis_sdk::{EventDomain, EventPublisher, EventType};
use serde_json::json;

use crate::output::{json_object, print_json, CliError, CliResult};
use crate::Global;

/// Arguments of `aegis publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The event as `domain.type` (`order.created` goes to `events.order.created`).
    event: String,
    /// The payload as a JSON object (default `{}`).
    payload: Option<String>,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    // Check everything before connecting: a bad argument costs no round trip.
    if let Some(relative) = args.event.strip_prefix("events.") {
        return Err(CliError::usage(format!(
            "the event is DOMAIN.TYPE, without events.: write {relative}"
        )));
    }
    let (domain, event_type) = args.event.split_once('.').ok_or_else(|| {
        CliError::usage(format!(
            "event {:?} must be DOMAIN.TYPE, e.g. order.created",
            args.event
        ))
    })?;
    EventDomain::new(domain)?;
    EventType::new(event_type)?;
    let payload = json_object(args.payload.as_deref(), "payload")?;

    let client = global.connect_jetstream().await?;
    let event = Event::new(domain, event_type, payload);
    let receipt = EventPublisher::new(&client)?.publish_event(&event).await?;
    let subject = format!("events.{domain}.{event_type}");
    if global.json {
        print_json(&json!({
            "subject": subject,
            "stream": receipt.stream,
            "sequence": receipt.sequence,
            "duplicate": receipt.duplicate,
            "message_id": event.message_id,
        }));
    } else {
        println!(
            "published {subject} ({} sequence {}, message {})",
            receipt.stream, receipt.sequence, event.message_id
        );
    }
    Ok(())
}
