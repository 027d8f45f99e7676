//! One events contract, two adapters: services publishing and subscribing run against a
//! real nats-server and in memory, so the two cannot drift apart. Streams and dead
//! letters are inspected through the event bus port, the same way on both.

#[macro_use]
mod backends;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::application::events::{
    dead_letter, DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, EVENTS_STREAM,
};
use aegis_sdk::domain::Event;
use aegis_sdk::ports::events::{ConsumerSpec, Delivery, EventBus, Retention, Settle, StartAt};
use aegis_sdk::ports::Headers;
use aegis_sdk::{
    Client, DeliveryMode, Encoding, ErrorKind, EventContext, EventPublisher, EventSubscription,
    HandlerError, Service, StartPolicy,
};
use backends::Backend;
use futures::StreamExt;
use serde_json::{json, Value};

/// What handlers saw: (instance, subject, message id), in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, String)>>>);

impl Seen {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|e| e.2.clone()).collect()
    }
    fn ids_of(&self, instance: &str) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|e| e.0 == instance)
            .map(|e| e.2.clone())
            .collect()
    }
    fn subjects(&self) -> HashSet<String> {
        self.0.lock().unwrap().iter().map(|e| e.1.clone()).collect()
    }
    fn per_instance(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (instance, _, _) in self.0.lock().unwrap().iter() {
            *counts.entry(instance.clone()).or_default() += 1;
        }
        counts
    }
}

/// A handler that records every event it gets.
fn recorder(
    seen: &Seen,
) -> impl Fn(EventContext, Event<Value>) -> std::future::Ready<Result<(), HandlerError>>
       + Send
       + Sync
       + 'static {
    let seen = seen.clone();
    move |ctx, event| {
        seen.0.lock().unwrap().push((
            ctx.instance_id().to_string(),
            ctx.subject().to_owned(),
            event.message_id.clone(),
        ));
        std::future::ready(Ok(()))
    }
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `n` events pipelined and returns their message ids.
async fn publish_many(publisher: &EventPublisher, domain: &str, kind: &str, n: u32) -> Vec<String> {
    let mut pending = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let event = Event::new(domain, kind, json!({"n": i}));
        ids.push(event.message_id.clone());
        pending.push(publisher.send_event(&event).await.expect("send"));
    }
    for ack in futures::future::join_all(pending).await {
        ack.expect("stored");
    }
    ids
}

fn bus(client: &Client) -> Arc<dyn EventBus> {
    client.backend().expect("a backend").event_bus(None)
}

/// Every dead letter stored so far (waits up to 2 s for the first).
async fn dead_letters(client: &Client) -> Vec<Delivery> {
    let bus = bus(client);
    let mut letters = Vec::new();
    let Ok(state) = bus.stream(DEAD_LETTER_STREAM).await else {
        return letters;
    };
    let mut deliveries = bus
        .consume(ConsumerSpec {
            stream: DEAD_LETTER_STREAM.to_owned(),
            name: format!("reader-{}", uuid::Uuid::new_v4().simple()),
            filter_subject: DEAD_LETTER_SUBJECTS.to_owned(),
            start: StartAt::First,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 100,
            inactive_threshold: Some(Duration::from_secs(5)),
            prefetch: 10,
            description: "contract test".to_owned(),
        })
        .await
        .unwrap();
    let expected = state.messages.max(1);
    while (letters.len() as u64) < expected {
        match tokio::time::timeout(Duration::from_secs(2), deliveries.next()).await {
            Ok(Some(delivery)) => {
                delivery.acker.settle(Settle::Ack).await.unwrap();
                letters.push(delivery);
            }
            _ => break,
        }
    }
    letters
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> &'a str {
    delivery
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing: {:?}", delivery.headers))
}

async fn compete_group_handles_each_event_once(backend: Backend) {
    let seen = Seen::default();
    let mut services = Vec::new();
    for i in 0..2 {
        let service = Service::builder("billing")
            .instance_id(format!("billing-{i}"))
            .on_event("order.created", DeliveryMode::Compete, {
                let seen = seen.clone();
                move |ctx: EventContext, event: Event<Value>| {
                    let seen = seen.clone();
                    async move {
                        // A little work, so one instance cannot take everything.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        seen.0.lock().unwrap().push((
                            ctx.instance_id().to_string(),
                            ctx.subject().to_owned(),
                            event.message_id.clone(),
                        ));
                        Ok::<_, HandlerError>(())
                    }
                }
            })
            .build()
            .unwrap();
        service.start(&backend.client().await).await.unwrap();
        services.push(service);
    }
    let publisher = backend.client().await.event_publisher().unwrap();
    let published = publish_many(&publisher, "order", "created", 200).await;

    wait_until("200 events", Duration::from_secs(30), || seen.len() >= 200).await;
    for service in &services {
        service.stop().await.unwrap();
    }
    let ids = seen.ids();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "some event was handled twice");
    assert_eq!(unique, published.iter().collect::<HashSet<_>>());
    let per_instance = seen.per_instance();
    assert_eq!(per_instance.len(), 2, "both handle some: {per_instance:?}");
}

async fn broadcast_reaches_every_instance_in_order(backend: Backend) {
    let seen = Seen::default();
    let mut services = Vec::new();
    for i in 0..3 {
        let service = Service::builder("cache")
            .instance_id(format!("cache-{i}"))
            .on_event("price.*", DeliveryMode::Broadcast, recorder(&seen))
            .build()
            .unwrap();
        service.start(&backend.client().await).await.unwrap();
        services.push(service);
    }
    let client = backend.client().await;
    let publisher = client.event_publisher().unwrap();
    let published = publish_many(&publisher, "price", "changed", 30).await;

    wait_until("90 deliveries", Duration::from_secs(20), || {
        seen.len() >= 90
    })
    .await;
    assert_eq!(
        bus(&client)
            .consumer_names(EVENTS_STREAM)
            .await
            .unwrap()
            .len(),
        3
    );
    for service in &services {
        service.stop().await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(seen.ids_of(&format!("cache-{i}")), published, "cache-{i}");
    }
    // A stopped broadcast instance leaves no consumer behind.
    assert_eq!(
        bus(&client).consumer_names(EVENTS_STREAM).await.unwrap(),
        Vec::<String>::new()
    );
}

async fn wildcard_patterns_follow_nats_rules(backend: Backend) {
    let (star, tail, created) = (Seen::default(), Seen::default(), Seen::default());
    let service = Service::builder("audit")
        .on_event("order.*", DeliveryMode::Compete, recorder(&star))
        .on_event("order.>", DeliveryMode::Compete, recorder(&tail))
        .on_event("*.created", DeliveryMode::Compete, recorder(&created))
        .build()
        .unwrap();
    let client = backend.client().await;
    service.start(&client).await.unwrap();

    // `order.a.b` cannot be published through the SDK (event types are one token), so
    // it goes in through the port. Each consumer delivers in stream order, so once the
    // last event (matching all three) arrived, nothing earlier is on its way.
    let deep = Event::new("order", "a.b", json!({}));
    bus(&client)
        .publish(
            "events.order.a.b".to_owned(),
            Headers::new(),
            Encoding::MessagePack.encode(&deep).unwrap().into(),
            &deep.message_id,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    for (domain, kind) in [
        ("user", "deleted"),
        ("user", "created"),
        ("order", "created"),
    ] {
        client.publish_event(domain, kind, json!({})).await.unwrap();
    }

    let done = |seen: &Seen| seen.subjects().contains("events.order.created");
    wait_until("the last event everywhere", Duration::from_secs(20), || {
        done(&star) && done(&tail) && done(&created)
    })
    .await;
    service.stop().await.unwrap();

    let set = |subjects: &[&str]| {
        subjects
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>()
    };
    assert_eq!(star.subjects(), set(&["events.order.created"]));
    assert_eq!(
        tail.subjects(),
        set(&["events.order.created", "events.order.a.b"])
    );
    assert_eq!(
        created.subjects(),
        set(&["events.order.created", "events.user.created"])
    );
    assert_eq!(star.len() + tail.len() + created.len(), 5);
}

async fn failing_handler_is_redelivered_with_backoff(backend: Backend) {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handled = Arc::new(AtomicUsize::new(0));
    let service = {
        let (attempts, handled) = (attempts.clone(), handled.clone());
        Service::builder("flaky")
            .events(
                EventSubscription::new(
                    "order.created",
                    DeliveryMode::Compete,
                    move |ctx: EventContext, _event: Event<Value>| {
                        let (attempts, handled) = (attempts.clone(), handled.clone());
                        async move {
                            attempts
                                .lock()
                                .unwrap()
                                .push((ctx.attempt(), tokio::time::Instant::now()));
                            match ctx.attempt() {
                                1 => Err(HandlerError::msg("not yet")),
                                2 => panic!("still not"),
                                _ => {
                                    handled.fetch_add(1, Ordering::SeqCst);
                                    Ok(())
                                }
                            }
                        }
                    },
                )
                .backoff([Duration::from_millis(300), Duration::from_millis(600)]),
            )
            .build()
            .unwrap()
    };
    let client = backend.client().await;
    service.start(&client).await.unwrap();
    client
        .publish_event("order", "created", json!({"n": 1}))
        .await
        .unwrap();

    wait_until("success", Duration::from_secs(20), || {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    service.stop().await.unwrap();
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Each redelivery waited out its backoff.
    assert!(attempts[1].1 - attempts[0].1 >= Duration::from_millis(300));
    assert!(attempts[2].1 - attempts[1].1 >= Duration::from_millis(600));
    assert_eq!(
        bus(&client)
            .stream(DEAD_LETTER_STREAM)
            .await
            .unwrap()
            .messages,
        0,
        "nothing in the dead letters"
    );
}

async fn always_failing_event_goes_to_the_dead_letters(backend: Backend) {
    let calls = Arc::new(AtomicUsize::new(0));
    let after = Seen::default();
    let service = {
        let calls = calls.clone();
        Service::builder("doomed")
            .events(
                EventSubscription::new(
                    "order.*",
                    DeliveryMode::Compete,
                    move |_ctx: EventContext, event: Event<Value>| {
                        let calls = calls.clone();
                        async move {
                            if event.event_type == "created" {
                                calls.fetch_add(1, Ordering::SeqCst);
                                return Err(HandlerError::msg("out of stock"));
                            }
                            Ok(())
                        }
                    },
                )
                .max_deliveries(3)
                .backoff([Duration::from_millis(50)]),
            )
            .on_event("order.shipped", DeliveryMode::Compete, recorder(&after))
            .build()
            .unwrap()
    };
    let client = backend.client().await;
    service.start(&client).await.unwrap();
    let event = Event::new("order", "created", json!({"id": 7}));
    client
        .event_publisher()
        .unwrap()
        .publish_event(&event)
        .await
        .unwrap();

    wait_until("three attempts", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) >= 3
    })
    .await;
    let letters = dead_letters(&client).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject, "dlq.events.order.created");
    assert_eq!(header(letter, dead_letter::REASON), "out of stock");
    assert_eq!(header(letter, dead_letter::ATTEMPTS), "3");
    assert_eq!(header(letter, dead_letter::SUBJECT), "events.order.created");
    assert_eq!(header(letter, dead_letter::SERVICE), "doomed");
    assert_eq!(
        header(letter, "Aegis-Dlq-Original-Nats-Msg-Id"),
        event.message_id
    );
    let body = Event::<Value>::decode(&letter.payload).unwrap();
    assert_eq!(body.message_id, event.message_id);

    // Settled: it does not come back, and later events still flow.
    client
        .publish_event("order", "shipped", json!({}))
        .await
        .unwrap();
    wait_until("a later event", Duration::from_secs(10), || {
        after.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.stop().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

async fn undecodable_event_is_dead_lettered_after_one_attempt(backend: Backend) {
    let seen = Seen::default();
    let service = Service::builder("strict")
        .on_event("order.created", DeliveryMode::Compete, recorder(&seen))
        .build()
        .unwrap();
    let client = backend.client().await;
    service.start(&client).await.unwrap();

    bus(&client)
        .publish(
            "events.order.created".to_owned(),
            Headers::new(),
            "not an event".into(),
            "raw-1",
        )
        .await
        .unwrap()
        .await
        .unwrap();
    client
        .publish_event("order", "created", json!({}))
        .await
        .unwrap();
    wait_until("the valid event", Duration::from_secs(20), || {
        seen.len() == 1
    })
    .await;
    let letters = dead_letters(&client).await;
    service.stop().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(header(&letters[0], dead_letter::REASON).starts_with("DECODE"));
    assert_eq!(header(&letters[0], dead_letter::ATTEMPTS), "1");
    assert_eq!(&letters[0].payload[..], b"not an event");
}

async fn long_running_handler_is_not_redelivered_while_it_works(backend: Backend) {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = {
        let calls = calls.clone();
        Service::builder("slowpoke")
            .events(
                EventSubscription::new(
                    "job.started",
                    DeliveryMode::Compete,
                    move |_ctx: EventContext, _event: Event<Value>| {
                        let calls = calls.clone();
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            // Two and a half times the ack wait.
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            Ok(())
                        }
                    },
                )
                .ack_wait(Duration::from_secs(2))
                .concurrency(4),
            )
            .build()
            .unwrap()
    };
    let client = backend.client().await;
    service.start(&client).await.unwrap();
    client
        .publish_event("job", "started", json!({}))
        .await
        .unwrap();
    wait_until("the handler", Duration::from_secs(10), || {
        calls.load(Ordering::SeqCst) >= 1
    })
    .await;
    // With concurrency 4, a redelivery during the 5 s would start a second call at once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    service.stop().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn unacknowledged_event_is_redelivered_after_the_ack_wait(backend: Backend) {
    // A consumer through the port that takes an event and never settles it: the
    // adapter hands it out again after the ack wait, with the attempt counted.
    let client = backend.client().await;
    client
        .publish_event("task", "queued", json!({"n": 1}))
        .await
        .unwrap();
    let mut deliveries = bus(&client)
        .consume(ConsumerSpec {
            stream: EVENTS_STREAM.to_owned(),
            name: "forgetful".to_owned(),
            filter_subject: "events.task.>".to_owned(),
            start: StartAt::First,
            ack_wait: Duration::from_secs(1),
            max_ack_pending: 10,
            inactive_threshold: None,
            prefetch: 1,
            description: "contract test".to_owned(),
        })
        .await
        .unwrap();
    let first = deliveries.next().await.unwrap();
    let taken = tokio::time::Instant::now();
    assert_eq!(first.attempt, 1);
    let again = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("redelivered within 10 s")
        .unwrap();
    assert!(taken.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        (again.stream_sequence, again.attempt),
        (first.stream_sequence, 2)
    );
    again.acker.settle(Settle::Ack).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(2), deliveries.next()).await;
    assert!(quiet.is_err(), "acknowledged: not delivered again");
}

async fn new_broadcast_instance_starts_with_new_events_unless_told_otherwise(backend: Backend) {
    let client = backend.client().await;
    let publisher = client.event_publisher().unwrap();
    let history = publish_many(&publisher, "price", "changed", 10).await;

    let (fresh, replay) = (Seen::default(), Seen::default());
    let newcomer = Service::builder("ticker")
        .on_event("price.changed", DeliveryMode::Broadcast, recorder(&fresh))
        .build()
        .unwrap();
    newcomer.start(&backend.client().await).await.unwrap();
    let replayer = Service::builder("ticker")
        .events(
            EventSubscription::new("price.changed", DeliveryMode::Broadcast, recorder(&replay))
                .start_at(StartPolicy::First),
        )
        .build()
        .unwrap();
    replayer.start(&backend.client().await).await.unwrap();

    let new = publish_many(&publisher, "price", "changed", 5).await;
    wait_until("new events", Duration::from_secs(20), || {
        fresh.len() >= 5 && replay.len() >= 15
    })
    .await;
    newcomer.stop().await.unwrap();
    replayer.stop().await.unwrap();
    assert_eq!(fresh.ids(), new, "only events published after it started");
    let all: Vec<String> = history.iter().chain(new.iter()).cloned().collect();
    assert_eq!(replay.ids(), all, "replay from the start");
}

async fn subscriptions_start_at_a_sequence_or_a_time(backend: Backend) {
    let client = backend.client().await;
    let publisher = client.event_publisher().unwrap();
    let early = publish_many(&publisher, "tick", "tock", 3).await;
    // Wall-clock start times: leave a clear gap on either side of the boundary.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let boundary = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = publish_many(&publisher, "tick", "tock", 2).await;

    let (from_third, from_time) = (Seen::default(), Seen::default());
    let service = Service::builder("replay")
        .events(
            EventSubscription::new("tick.tock", DeliveryMode::Broadcast, recorder(&from_third))
                .start_at(StartPolicy::Sequence(3)),
        )
        .events(
            EventSubscription::new("tick.*", DeliveryMode::Broadcast, recorder(&from_time))
                .start_at(StartPolicy::Time(boundary)),
        )
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();
    wait_until("replays", Duration::from_secs(20), || {
        from_third.len() >= 3 && from_time.len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.stop().await.unwrap();
    let mut expected = vec![early[2].clone()];
    expected.extend(late.iter().cloned());
    assert_eq!(from_third.ids(), expected);
    assert_eq!(from_time.ids(), late);
}

async fn retried_publish_is_stored_once(backend: Backend) {
    let publisher = backend.client().await.event_publisher().unwrap();
    let event = Event::new("order", "created", json!({"n": 1}));
    let first = publisher.publish_event(&event).await.unwrap();
    let again = publisher.publish_event(&event).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.sequence, again.sequence);
    assert_eq!(first.stream, "EVENTS");
    let other = publisher
        .publish("order", "created", json!({"n": 2}))
        .await
        .unwrap();
    assert_eq!(other, first.sequence + 1);
}

async fn streams_and_names_are_checked(backend: Backend) {
    let client = backend.client().await;
    for (domain, kind) in [("a.b", "x"), ("order", "*"), ("", "x"), ("order", "a b")] {
        let err = client
            .publish_event(domain, kind, json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{domain:?} {kind:?}");
    }
    // Nothing reached the server: no stream was even created.
    let err = bus(&client).stream(EVENTS_STREAM).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // The first publish creates the stream as the contract has it.
    let sequence = client
        .publish_event("order", "created", json!({}))
        .await
        .unwrap();
    assert_eq!(sequence, 1);
    let state = bus(&client).stream(EVENTS_STREAM).await.unwrap();
    assert_eq!(state.subjects, vec!["events.>".to_owned()]);
    assert_eq!(state.retention, Retention::Limits);
    assert_eq!(state.messages, 1);

    // A subject no stream captures.
    let err = bus(&client)
        .publish(
            "nowhere.at.all".to_owned(),
            Headers::new(),
            "x".into(),
            "id-1",
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Too large for the server.
    let err = client
        .publish_event(
            "order",
            "created",
            json!({"blob": "x".repeat(2 * 1024 * 1024)}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
}

contract!(
    compete_group_handles_each_event_once,
    broadcast_reaches_every_instance_in_order,
    wildcard_patterns_follow_nats_rules,
    always_failing_event_goes_to_the_dead_letters,
    undecodable_event_is_dead_lettered_after_one_attempt,
    new_broadcast_instance_starts_with_new_events_unless_told_otherwise,
    retried_publish_is_stored_once,
    subscriptions_start_at_a_sequence_or_a_time,
    streams_and_names_are_checked;
    paused:
    failing_handler_is_redelivered_with_backoff,
    long_running_handler_is_not_redelivered_while_it_works,
    unacknowledged_event_is_redelivered_after_the_ack_wait,
);
