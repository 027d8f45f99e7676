//! Order events in both delivery modes.
//!
//! Two instances of `fulfilment` share the `order.created` events (compete: each order
//! is packed once), and two instances of `dashboard` each see every `order.*` event
//! (broadcast). The program publishes a few orders, lets them flow for a few seconds,
//! prints who handled what, stops everything and exits.
//!
//! Run it against a local server with JetStream (start one with
//! `cargo run -p aegis-cli -- server`, or `nats-server -js`):
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p aegis-examples --example order_service
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::domain::Event;
use aegis_sdk::{Client, ConnectOptions, DeliveryMode, EventContext, HandlerError, Service};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Order {
    order_id: String,
    amount_cents: u64,
}

type Log = Arc<Mutex<Vec<String>>>;

fn fulfilment(instance: &str, log: &Log) -> Result<Service, aegis_sdk::Error> {
    let log = log.clone();
    Service::builder("fulfilment")
        .instance_id(instance)
        .on_event(
            "order.created",
            DeliveryMode::Compete,
            move |ctx: EventContext, event: Event<Order>| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!(
                        "{} packs {} (attempt {})",
                        ctx.instance_id(),
                        event.payload.order_id,
                        ctx.attempt()
                    ));
                    Ok::<_, HandlerError>(())
                }
            },
        )
        .build()
}

fn dashboard(instance: &str, log: &Log) -> Result<Service, aegis_sdk::Error> {
    let log = log.clone();
    Service::builder("dashboard")
        .instance_id(instance)
        .on_event(
            "order.*",
            DeliveryMode::Broadcast,
            move |ctx: EventContext, event: Event<serde_json::Value>| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!(
                        "{} shows {} {}",
                        ctx.instance_id(),
                        event.event_type,
                        event.payload["order_id"]
                    ));
                    Ok::<_, HandlerError>(())
                }
            },
        )
        .build()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aegis_examples::finish(run().await)
}

async fn run() -> aegis_examples::Result {
    aegis_examples::init_tracing();
    let client = Client::connect(&ConnectOptions::new(aegis_examples::nats_url())).await?;
    let log: Log = Arc::default();

    let services = vec![
        fulfilment("fulfilment-1", &log)?,
        fulfilment("fulfilment-2", &log)?,
        dashboard("dashboard-1", &log)?,
        dashboard("dashboard-2", &log)?,
    ];
    for service in &services {
        service.start(&client).await?;
    }

    // Pipelined: send all, then await every acknowledgement.
    let publisher = client.event_publisher()?;
    let mut pending = Vec::new();
    for i in 1..=6 {
        let order = Order {
            order_id: format!("o-{i}"),
            amount_cents: 1000 * i,
        };
        pending.push(publisher.send("order", "created", order).await?);
    }
    for ack in pending {
        let receipt = ack.await?;
        tracing::info!(sequence = receipt.sequence, "order stored");
    }
    // Awaited: one at a time.
    let sequence = client
        .publish_event("order", "shipped", serde_json::json!({"order_id": "o-1"}))
        .await?;
    tracing::info!(sequence, "shipment stored");

    tokio::time::sleep(Duration::from_secs(3)).await;
    for service in &services {
        service.stop().await?;
    }

    let mut out = String::new();
    for line in log.lock().unwrap().iter() {
        out.push_str(line);
        out.push('\n');
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}
