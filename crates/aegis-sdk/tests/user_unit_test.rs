//! How a user unit-tests a service without a NATS server: the service below is started
//! on the in-memory backend (feature `testing`) in plain `#[tokio::test]`s, called,
//! fed events and commands, and checked, with tokio's clock paused where time matters.
//!
//! Run with `cargo test -p aegis-sdk --test user_unit_test`. In your own crate, add
//! `aegis-sdk = { version = "...", features = ["testing"] }` and tokio's `test-util`
//! feature to your `[dev-dependencies]`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::adapters::memory::MemoryBackend;
use aegis_sdk::application::events::dead_letter;
use aegis_sdk::application::kv::Kv;
use aegis_sdk::domain::Event;
use aegis_sdk::ports::kv::BucketConfig;
use aegis_sdk::{
    Client, CommandContext, DeliveryMode, ErrorKind, EventContext, EventSubscription,
    FailoverPolicy, HandlerError, RpcContext, Service,
};
use serde_json::{json, Value};

/// The service under test: reserves stock for a while, announces orders, and rebuilds
/// its index on command.
fn inventory(reservations: Kv, shipped: Arc<Mutex<Vec<String>>>) -> Service {
    Service::builder("inventory")
        .rpc("reserve", move |_: RpcContext, p: Value| {
            let reservations = reservations.clone();
            async move {
                let item = p["item"]
                    .as_str()
                    .ok_or_else(|| HandlerError::invalid_request("item is required"))?
                    .to_owned();
                // A reservation holds for 30 s unless the order is placed.
                reservations
                    .create(&item, &"reserved", Some(Duration::from_secs(30)))
                    .await
                    .map_err(|e| match e.kind() {
                        ErrorKind::AlreadyExists => {
                            HandlerError::invalid_request(format!("{item} is reserved"))
                        }
                        _ => HandlerError::msg(e),
                    })?;
                Ok::<_, HandlerError>(json!({"reserved": item}))
            }
        })
        .on_event(
            "order.shipped",
            DeliveryMode::Compete,
            move |_: EventContext, event: Event<Value>| {
                let shipped = shipped.clone();
                async move {
                    shipped
                        .lock()
                        .unwrap()
                        .push(event.payload["item"].as_str().unwrap_or("?").to_owned());
                    Ok::<_, HandlerError>(())
                }
            },
        )
        .on_command(
            "rebuild_index",
            |ctx: CommandContext, _: Value| async move {
                ctx.progress(50.0, "halfway").await?;
                Ok::<_, HandlerError>(json!({"rebuilt": true}))
            },
        )
        .build()
        .unwrap()
}

async fn started(client: &Client) -> (Service, Kv, Arc<Mutex<Vec<String>>>) {
    let reservations = Kv::open(client, BucketConfig::new("reservations"))
        .await
        .unwrap();
    let shipped = Arc::default();
    let service = inventory(reservations.clone(), Arc::clone(&shipped));
    service.start(client).await.unwrap();
    (service, reservations, shipped)
}

#[tokio::test]
async fn calls_events_and_commands_reach_the_service() {
    let client = Client::in_memory();
    let (service, _, shipped) = started(&client).await;

    // RPC: results and typed errors, as over NATS.
    let reply: Value = client
        .call("inventory", "reserve", json!({"item": "lamp"}))
        .await
        .unwrap();
    assert_eq!(reply, json!({"reserved": "lamp"}));
    let err = client
        .call::<_, Value>("inventory", "reserve", json!({"item": "lamp"}))
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some("INVALID_REQUEST"));
    let err = client
        .call::<_, Value>("nobody", "reserve", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);

    // Events: published, stored, delivered to the handler.
    client
        .publish_event("order", "shipped", json!({"item": "lamp"}))
        .await
        .unwrap();
    while shipped.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*shipped.lock().unwrap(), vec!["lamp"]);

    // Commands: progress, then the result.
    let mut handle = client
        .send_command("inventory", "rebuild_index", json!({}))
        .await
        .unwrap();
    let progress = handle.next_progress().await.unwrap();
    assert_eq!(progress.percent, 50.0);
    let result: Value = handle.result().await.unwrap();
    assert_eq!(result, json!({"rebuilt": true}));

    service.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reservation_expires_after_its_ttl_on_the_test_clock() {
    let client = Client::in_memory();
    let (service, reservations, _) = started(&client).await;
    let _: Value = client
        .call("inventory", "reserve", json!({"item": "desk"}))
        .await
        .unwrap();

    // The clock is paused: 29 s pass in no time, and the reservation still holds.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(reservations.get::<String>("desk").await.unwrap().is_some());

    // Past 30 s it is gone, and the item can be reserved again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reservations.get::<String>("desk").await.unwrap().is_none());
    let again: Value = client
        .call("inventory", "reserve", json!({"item": "desk"}))
        .await
        .unwrap();
    assert_eq!(again, json!({"reserved": "desk"}));
    service.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_event_handler_gets_the_event_again() {
    let backend = MemoryBackend::new();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let service = Service::builder("mailer")
        .on_event("user.signed_up", DeliveryMode::Compete, {
            let attempts = attempts.clone();
            move |ctx: EventContext, _: Event<Value>| {
                let attempts = attempts.clone();
                async move {
                    attempts.lock().unwrap().push(ctx.attempt());
                    if ctx.attempt() < 3 {
                        return Err(HandlerError::msg("mail server down"));
                    }
                    Ok(())
                }
            }
        })
        .build()
        .unwrap();
    service.start(&backend.client()).await.unwrap();

    // Another client of the same in-memory server publishes.
    backend
        .client()
        .publish_event("user", "signed_up", json!({"email": "a@example.com"}))
        .await
        .unwrap();

    // Redelivered after each backoff (seconds of paused time, no real waiting).
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(*attempts.lock().unwrap(), vec![1, 2, 3]);
    service.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_single_active_service_elects_a_leader_in_memory() {
    let backend = MemoryBackend::new();
    let instances: Vec<Service> = ["a", "b"]
        .into_iter()
        .map(|id| {
            Service::builder("ledger")
                .instance_id(format!("ledger-{id}"))
                .single_active("default", FailoverPolicy::balanced())
                .exclusive_rpc("close_books", |ctx: RpcContext, _: Value| async move {
                    Ok::<_, HandlerError>(json!({"by": ctx.instance_id().as_str()}))
                })
                .build()
                .unwrap()
        })
        .collect();
    for instance in &instances {
        instance.start(&backend.client()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders: Vec<&Service> = instances
        .iter()
        .filter(|s| s.leadership().unwrap().is_leader())
        .collect();
    assert_eq!(leaders.len(), 1);

    // Whichever instance takes the call, the leader runs it.
    let client = backend.client();
    let reply: Value = client
        .call("ledger", "close_books", json!({}))
        .await
        .unwrap();
    assert_eq!(reply["by"], leaders[0].instance_id().as_str());
    for instance in &instances {
        instance.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn what_a_service_published_and_gave_up_on_can_be_read_back() {
    let backend = MemoryBackend::new();
    let service = Service::builder("payments")
        .events(
            EventSubscription::new(
                "order.placed",
                DeliveryMode::Compete,
                |ctx: EventContext, event: Event<Value>| async move {
                    if event.payload["amount"].as_i64() < Some(0) {
                        return Err(HandlerError::invalid_request("negative amount"));
                    }
                    // The handler's reaction: an event of its own.
                    ctx.client()
                        .publish_event("payment", "charged", json!({"order": event.payload["id"]}))
                        .await
                        .map_err(HandlerError::msg)?;
                    Ok(())
                },
            )
            .max_deliveries(2),
        )
        .build()
        .unwrap();
    service.start(&backend.client()).await.unwrap();

    let client = backend.client();
    client
        .publish_event("order", "placed", json!({"id": "o-1", "amount": 5}))
        .await
        .unwrap();
    client
        .publish_event("order", "placed", json!({"id": "o-2", "amount": -5}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    service.stop().await.unwrap();

    // Everything published, in order: the two orders and the one charge.
    let events: Vec<Event<Value>> = backend
        .messages("EVENTS")
        .unwrap()
        .iter()
        .map(|m| Event::decode(&m.payload).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.domain.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("order", "placed"),
            ("order", "placed"),
            ("payment", "charged")
        ]
    );
    assert_eq!(events[2].payload, json!({"order": "o-1"}));
    assert_eq!(
        events[2].source.as_deref(),
        Some(service.instance_id().as_str())
    );

    // The poison order went to the dead letters after its two attempts.
    let letters = backend.messages("EVENTS_DLQ").unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].subject, "dlq.events.order.placed");
    assert_eq!(letters[0].headers.get(dead_letter::ATTEMPTS), Some("2"));
    let poison: Event<Value> = Event::decode(&letters[0].payload).unwrap();
    assert_eq!(poison.payload["id"], "o-2");
}
