//! Events: compete (one instance of a service handles each) and broadcast (every
//! instance does).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_sdk::domain::Event;
use aegis_sdk::{DeliveryMode, EventContext, HandlerError, Service};
use serde_json::{json, Value};

use super::Narrator;
use crate::output::{CliError, CliResult};
use crate::Global;

type Seen = Arc<Mutex<BTreeMap<String, usize>>>;

fn counting(service: &str, instance: String, mode: DeliveryMode, seen: Seen) -> CliResult<Service> {
    let service = Service::builder(service)
        .instance_id(instance)
        .on_event(
            "order.*",
            mode,
            move |ctx: EventContext, _event: Event<Value>| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    *seen.entry(ctx.instance_id().to_string()).or_default() += 1;
                    Ok::<_, HandlerError>(())
                }
            },
        )
        .build()?;
    Ok(service)
}

pub(super) async fn run(global: &Global, say: &Narrator) -> CliResult<Value> {
    say.step("events: 2 fulfilment instances compete, 2 dashboard instances each see all");
    let compete: Seen = Arc::default();
    let broadcast: Seen = Arc::default();
    let mut services = Vec::new();
    for i in 0..2 {
        let service = counting(
            "fulfilment",
            format!("fulfilment-demo{i}"),
            DeliveryMode::Compete,
            compete.clone(),
        )?;
        service.start(&global.connect().await?).await?;
        services.push(service);
        let service = counting(
            "dashboard",
            format!("dashboard-demo{i}"),
            DeliveryMode::Broadcast,
            broadcast.clone(),
        )?;
        service.start(&global.connect().await?).await?;
        services.push(service);
    }

    let client = global.connect().await?;
    let published = 40usize;
    for i in 0..published {
        client
            .publish_event(
                "order",
                "created",
                json!({"order_id": format!("o-{i}"), "amount": i * 10}),
            )
            .await?;
    }
    say.line(&format!(
        "published {published} order.created events to stream EVENTS"
    ));

    // Wait until every expected delivery arrived (or give up after 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = |seen: &Seen| seen.lock().map(|s| s.values().sum::<usize>()).unwrap_or(0);
    while (total(&compete) < published || total(&broadcast) < 2 * published)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for service in &services {
        service.stop().await?;
    }

    let compete = compete.lock().map(|s| s.clone()).unwrap_or_default();
    let broadcast = broadcast.lock().map(|s| s.clone()).unwrap_or_default();
    say.line(&format!("compete:   {compete:?}"));
    say.line(&format!("broadcast: {broadcast:?}"));
    let compete_total: usize = compete.values().sum();
    if compete_total != published || broadcast.values().any(|&n| n != published) {
        return Err(CliError::new(format!(
            "events did not arrive as expected: compete {compete:?}, broadcast {broadcast:?}"
        )));
    }
    let split: Vec<usize> = compete.values().copied().collect();
    Ok(json!({
        "published": published,
        "compete_total": compete_total,
        "compete_split": split,
        "broadcast_each": published,
    }))
}
