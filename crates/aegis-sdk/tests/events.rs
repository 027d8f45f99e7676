//! Durable events end to end on a real nats-server started by each test.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::application::events::{dead_letter, EventStreamConfig, DEAD_LETTER_STREAM};
use aegis_sdk::domain::Event;
use aegis_sdk::{
    Client, ConnectOptions, DeliveryMode, Encoding, ErrorKind, EventContext, EventPublisher,
    EventSubscription, HandlerError, Service, StartPolicy,
};
use aegis_test_support::NatsServer;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

async fn connect(server: &NatsServer) -> Client {
    Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

async fn raw_jetstream(server: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(server.url())
        .await
        .expect("raw connect");
    async_nats::jetstream::new(client)
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    n: u32,
}

/// What handlers saw: (instance, subject, message id), in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, String)>>>);

impl Seen {
    fn record<T>(&self, ctx: &EventContext, event: &Event<T>) {
        self.0.lock().unwrap().push((
            ctx.instance_id().to_string(),
            ctx.subject().to_owned(),
            event.message_id.clone(),
        ));
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|e| e.2.clone()).collect()
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
        seen.record(&ctx, &event);
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

async fn start(service: &Service, server: &NatsServer) {
    service.start(&connect(server).await).await.expect("start");
}

/// Publishes `events` pipelined and returns their message ids.
async fn publish_many(publisher: &EventPublisher, domain: &str, kind: &str, n: u32) -> Vec<String> {
    let mut pending = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let event = Event::new(domain, kind, Order { n: i });
        ids.push(event.message_id.clone());
        pending.push(publisher.send_event(&event).await.expect("send"));
    }
    for ack in futures::future::join_all(pending).await {
        ack.expect("stored");
    }
    ids
}

async fn consumer_names(server: &NatsServer) -> Vec<String> {
    let js = raw_jetstream(server).await;
    let stream = js.get_stream("EVENTS").await.expect("EVENTS");
    let names: Vec<String> = stream
        .consumer_names()
        .map(|n| n.expect("name"))
        .collect()
        .await;
    names
}

fn assert_exactly_once(seen: &Seen, published: &[String]) {
    let ids = seen.ids();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "some event was handled twice");
    let expected: HashSet<&String> = published.iter().collect();
    assert_eq!(unique, expected);
}

fn assert_all_handled(seen: &Seen, published: &[String]) -> bool {
    let ids: HashSet<String> = seen.ids().into_iter().collect();
    published.iter().all(|id| ids.contains(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_events_reach_a_compete_group_exactly_once() {
    let server = NatsServer::start();
    let seen = Seen::default();
    let mut services = Vec::new();
    for i in 0..2 {
        let service = Service::builder("billing")
            .instance_id(format!("billing-{i}"))
            .on_event("order.created", DeliveryMode::Compete, recorder(&seen))
            .build()
            .unwrap();
        start(&service, &server).await;
        services.push(service);
    }

    // 1,000 publishes in flight at once, from several tasks.
    let client = connect(&server).await;
    let publisher = EventPublisher::new(&client).unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut pending = Vec::new();
            for i in 0..250 {
                let event = Event::new("order", "created", Order { n: t * 1000 + i });
                ids.push(event.message_id.clone());
                pending.push(publisher.send_event(&event).await.unwrap());
            }
            for ack in pending {
                ack.await.unwrap();
            }
            ids
        }));
    }
    let mut published = Vec::new();
    for task in tasks {
        published.extend(task.await.unwrap());
    }
    assert_eq!(published.len(), 1000);

    wait_until("1000 events", Duration::from_secs(30), || {
        seen.len() >= 1000
    })
    .await;
    for service in &services {
        service.stop().await.unwrap();
    }
    assert_exactly_once(&seen, &published);
    let per_instance = seen.per_instance();
    assert_eq!(
        per_instance.len(),
        2,
        "both instances handle some: {per_instance:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_instance() {
    let server = NatsServer::start();
    let seen = Seen::default();
    let mut services = Vec::new();
    for i in 0..3 {
        let service = Service::builder("cache")
            .instance_id(format!("cache-{i}"))
            .on_event("price.*", DeliveryMode::Broadcast, recorder(&seen))
            .build()
            .unwrap();
        start(&service, &server).await;
        services.push(service);
    }
    let publisher = connect(&server).await.event_publisher().unwrap();
    let published = publish_many(&publisher, "price", "changed", 50).await;

    wait_until("150 deliveries", Duration::from_secs(20), || {
        seen.len() >= 150
    })
    .await;
    for service in &services {
        service.stop().await.unwrap();
    }
    let per_instance = seen.per_instance();
    assert_eq!(per_instance.len(), 3);
    for (instance, count) in &per_instance {
        assert_eq!(*count, 50, "{instance} handled {count}");
    }
    for i in 0..3 {
        let mine: Vec<String> = seen
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == format!("cache-{i}"))
            .map(|e| e.2.clone())
            .collect();
        assert_eq!(mine, published, "cache-{i} got every event, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_patterns_follow_nats_rules() {
    let server = NatsServer::start();
    let (star, tail, created) = (Seen::default(), Seen::default(), Seen::default());
    let service = Service::builder("audit")
        .on_event("order.*", DeliveryMode::Compete, recorder(&star))
        .on_event("order.>", DeliveryMode::Compete, recorder(&tail))
        .on_event("*.created", DeliveryMode::Compete, recorder(&created))
        .build()
        .unwrap();
    start(&service, &server).await;

    // `order.a.b` cannot be published through the SDK (event types are one token), so
    // it goes in raw. Non-matching events go first: each consumer delivers in stream
    // order, so once the last event (matching all three) arrived, nothing earlier is
    // still on its way.
    let js = raw_jetstream(&server).await;
    let deep = Event::new("order", "a.b", json!({}));
    js.publish(
        "events.order.a.b",
        Encoding::MessagePack.encode(&deep).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let client = connect(&server).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_of_one_service_never_share_consumers() {
    let server = NatsServer::start();
    let (orders, payments, orders_broadcast) = (Seen::default(), Seen::default(), Seen::default());
    let service = Service::builder("ledger")
        .on_event("order.created", DeliveryMode::Compete, recorder(&orders))
        .on_event("payment.*", DeliveryMode::Compete, recorder(&payments))
        .on_event(
            "order.created",
            DeliveryMode::Broadcast,
            recorder(&orders_broadcast),
        )
        .build()
        .unwrap();
    start(&service, &server).await;
    assert_eq!(consumer_names(&server).await.len(), 3);

    let publisher = connect(&server).await.event_publisher().unwrap();
    let order_ids = publish_many(&publisher, "order", "created", 20).await;
    let payment_ids = publish_many(&publisher, "payment", "settled", 20).await;

    wait_until("both streams", Duration::from_secs(20), || {
        orders.len() >= 20 && payments.len() >= 20 && orders_broadcast.len() >= 20
    })
    .await;
    service.stop().await.unwrap();
    assert_exactly_once(&orders, &order_ids);
    assert_exactly_once(&payments, &payment_ids);
    assert_exactly_once(&orders_broadcast, &order_ids);

    // The same pattern and mode twice would share a consumer: refused at start.
    let twice = Service::builder("ledger")
        .on_event("order.created", DeliveryMode::Compete, recorder(&orders))
        .on_event("order.created", DeliveryMode::Compete, recorder(&orders))
        .build()
        .unwrap();
    let err = twice.start(&connect(&server).await).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failing_twice_succeeds_on_the_third_attempt() {
    let server = NatsServer::start();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handled = Arc::new(AtomicUsize::new(0));
    let service = {
        let (attempts, handled) = (attempts.clone(), handled.clone());
        Service::builder("flaky")
            .events(
                EventSubscription::new(
                    "order.created",
                    DeliveryMode::Compete,
                    move |ctx: EventContext, _event: Event<Order>| {
                        let (attempts, handled) = (attempts.clone(), handled.clone());
                        async move {
                            attempts.lock().unwrap().push(ctx.attempt());
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
                .backoff([Duration::from_millis(50)]),
            )
            .build()
            .unwrap()
    };
    start(&service, &server).await;
    connect(&server)
        .await
        .publish_event("order", "created", Order { n: 1 })
        .await
        .unwrap();

    wait_until("success", Duration::from_secs(20), || {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    service.stop().await.unwrap();
    assert_eq!(*attempts.lock().unwrap(), vec![1, 2, 3]);
    let js = raw_jetstream(&server).await;
    let dead = js
        .get_stream(DEAD_LETTER_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(dead, 0, "nothing in the dead letters");
}

/// Reads every message of the dead-letter stream.
async fn dead_letters(server: &NatsServer) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let js = raw_jetstream(server).await;
    let stream = js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    let mut out = Vec::new();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    for seq in 1..=last {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push(message);
        }
    }
    out
}

fn header<'a>(message: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> &'a str {
    message
        .headers
        .get(name)
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("header {name} missing: {:?}", message.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_event_goes_to_the_dead_letters_with_its_reason() {
    let server = NatsServer::start();
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
    start(&service, &server).await;
    let client = connect(&server).await;
    let event = Event::new("order", "created", json!({"id": 7}));
    client
        .event_publisher()
        .unwrap()
        .publish_event(&event)
        .await
        .unwrap();

    wait_until("a dead letter", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) >= 3
    })
    .await;
    // The dead letter is stored before the delivery is settled; poll the stream.
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = dead_letters(&server).await;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject.as_str(), "dlq.events.order.created");
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
    service.stop().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_event_is_dead_lettered_after_one_attempt() {
    let server = NatsServer::start();
    let seen = Seen::default();
    let service = Service::builder("strict")
        .on_event("order.created", DeliveryMode::Compete, recorder(&seen))
        .build()
        .unwrap();
    start(&service, &server).await;

    let js = raw_jetstream(&server).await;
    js.publish("events.order.created", "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let client = connect(&server).await;
    client
        .publish_event("order", "created", json!({}))
        .await
        .unwrap();

    wait_until("the valid event", Duration::from_secs(20), || {
        seen.len() == 1
    })
    .await;
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = dead_letters(&server).await;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.stop().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(header(&letters[0], dead_letter::REASON).starts_with("DECODE"));
    assert_eq!(header(&letters[0], dead_letter::ATTEMPTS), "1");
    assert_eq!(&letters[0].payload[..], b"not an event");
}

type BoxedHandlerFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// Records slowly enough that a stop or restart lands mid-stream.
fn slow_recorder(
    seen: &Seen,
) -> impl Fn(EventContext, Event<Value>) -> BoxedHandlerFuture + Send + Sync + 'static {
    let seen = seen.clone();
    move |ctx, event| {
        let seen = seen.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.record(&ctx, &event);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compete_instance_stopping_mid_stream_loses_nothing() {
    let server = NatsServer::start();
    let seen = Seen::default();
    let mut services = Vec::new();
    for i in 0..2 {
        let service = Service::builder("packer")
            .instance_id(format!("packer-{i}"))
            .events(
                EventSubscription::new("order.*", DeliveryMode::Compete, slow_recorder(&seen))
                    .ack_wait(Duration::from_secs(2)),
            )
            .build()
            .unwrap();
        start(&service, &server).await;
        services.push(service);
    }
    let publisher = connect(&server).await.event_publisher().unwrap();
    let published = publish_many(&publisher, "order", "packed", 400).await;

    wait_until("some progress", Duration::from_secs(20), || {
        seen.len() >= 60
    })
    .await;
    services[0].stop().await.unwrap();
    let stopped_at = seen.per_instance().get("packer-0").copied().unwrap_or(0);

    wait_until("every event", Duration::from_secs(30), || {
        assert_all_handled(&seen, &published)
    })
    .await;
    services[1].stop().await.unwrap();
    let per_instance = seen.per_instance();
    assert_eq!(
        per_instance.get("packer-0").copied().unwrap_or(0),
        stopped_at
    );
    assert!(per_instance.get("packer-1").copied().unwrap_or(0) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_stream_loses_no_event() {
    let mut server = NatsServer::start();
    let seen = Seen::default();
    let service = Service::builder("survivor")
        .events(
            EventSubscription::new("order.*", DeliveryMode::Compete, slow_recorder(&seen))
                .ack_wait(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    start(&service, &server).await;
    let client = connect(&server).await;
    let publisher = client.event_publisher().unwrap();
    let mut published = publish_many(&publisher, "order", "created", 300).await;

    wait_until("some progress", Duration::from_secs(20), || {
        seen.len() >= 30
    })
    .await;
    server.restart();

    // Publish more once the server is back; a publish that fails while the client
    // reconnects is retried with the same event (its id makes the retry safe).
    for i in 0..100 {
        let event = Event::new("order", "created", Order { n: 1000 + i });
        let mut tries = 0;
        loop {
            match publisher.publish_event(&event).await {
                Ok(_) => break,
                Err(error) => {
                    tries += 1;
                    assert!(tries < 100, "publish keeps failing: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        published.push(event.message_id);
    }

    wait_until("every event", Duration::from_secs(60), || {
        assert_all_handled(&seen, &published)
    })
    .await;
    service.stop().await.unwrap();
    assert_eq!(
        consumer_names(&server).await.len(),
        1,
        "no leaked consumers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_broadcast_instance_starts_with_new_events_unless_told_otherwise() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let publisher = client.event_publisher().unwrap();
    let history = publish_many(&publisher, "price", "changed", 10).await;

    let (fresh, replay) = (Seen::default(), Seen::default());
    let newcomer = Service::builder("ticker")
        .on_event("price.changed", DeliveryMode::Broadcast, recorder(&fresh))
        .build()
        .unwrap();
    start(&newcomer, &server).await;
    let replayer = Service::builder("ticker")
        .events(
            EventSubscription::new("price.changed", DeliveryMode::Broadcast, recorder(&replay))
                .start_at(StartPolicy::First),
        )
        .build()
        .unwrap();
    start(&replayer, &server).await;

    let new = publish_many(&publisher, "price", "changed", 5).await;
    wait_until("new events", Duration::from_secs(20), || {
        fresh.len() >= 5 && replay.len() >= 15
    })
    .await;
    assert_eq!(fresh.ids(), new, "only events published after it started");
    let all: Vec<String> = history.iter().chain(new.iter()).cloned().collect();
    assert_eq!(replay.ids(), all, "replay from the start");

    // A stopped broadcast instance leaves no consumer behind.
    assert_eq!(consumer_names(&server).await.len(), 2);
    newcomer.stop().await.unwrap();
    replayer.stop().await.unwrap();
    assert_eq!(consumer_names(&server).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_publish_is_stored_once() {
    let server = NatsServer::start();
    let publisher = connect(&server).await.event_publisher().unwrap();
    let event = Event::new("order", "created", Order { n: 1 });
    let first = publisher.publish_event(&event).await.unwrap();
    let again = publisher.publish_event(&event).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.sequence, again.sequence);
    assert_eq!(first.stream, "EVENTS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_created_with_the_contract_defaults_and_existing_ones_are_kept() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let sequence = client
        .publish_event("order", "created", json!({}))
        .await
        .unwrap();
    assert_eq!(sequence, 1);
    let js = raw_jetstream(&server).await;
    let info = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.subjects, vec!["events.>".to_owned()]);
    assert_eq!(info.config.max_messages, 100_000);
    assert_eq!(
        info.config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    assert_eq!(info.config.num_replicas, 1);

    // An existing stream with other limits is used as it is.
    let other = NatsServer::start();
    let js = raw_jetstream(&other).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        max_messages: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = connect(&other).await;
    let publisher = EventPublisher::with_options(
        &client,
        aegis_sdk::application::events::PublisherOptions {
            stream: EventStreamConfig {
                max_messages: Some(5),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    publisher
        .publish("order", "created", json!({}))
        .await
        .unwrap();
    let info = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.max_messages, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_serve_is_a_clear_error() {
    let server = NatsServer::start();
    let js = raw_jetstream(&server).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["legacy.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = connect(&server).await;
    let err = client
        .publish_event("order", "created", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(err.message().contains("legacy.>"), "{err}");

    let service = Service::builder("reader")
        .on_event("order.*", DeliveryMode::Compete, recorder(&Seen::default()))
        .build()
        .unwrap();
    let err = service.start(&client).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_rejected_before_the_wire() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    for (domain, kind) in [("a.b", "x"), ("order", "*"), ("", "x"), ("order", "a b")] {
        let err = client
            .publish_event(domain, kind, json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{domain:?} {kind:?}");
    }
    for pattern in ["order.>.x", "", "order..x", "order.*x"] {
        let err = Service::builder("s")
            .on_event(pattern, DeliveryMode::Compete, recorder(&Seen::default()))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{pattern:?}");
    }
    let mut event = Event::new("order", "created", json!({}));
    event.version = "one".into();
    let err = client
        .event_publisher()
        .unwrap()
        .publish_event(&event)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // Nothing reached the server: no stream was even created.
    let js = raw_jetstream(&server).await;
    assert!(js.get_stream("EVENTS").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_recreates_a_stream_deleted_under_it() {
    let server = NatsServer::start();
    let publisher = connect(&server).await.event_publisher().unwrap();
    assert_eq!(
        publisher
            .publish("order", "created", json!({}))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        publisher
            .publish("order", "created", json!({}))
            .await
            .unwrap(),
        2
    );

    let js = raw_jetstream(&server).await;
    js.delete_stream("EVENTS").await.unwrap();
    assert_eq!(
        publisher
            .publish("order", "created", json!({}))
            .await
            .unwrap(),
        1
    );
    let info = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pending_events_are_still_published() {
    let server = NatsServer::start();
    let publisher = connect(&server).await.event_publisher().unwrap();
    for i in 0..10 {
        let pending = publisher
            .send("order", "created", Order { n: i })
            .await
            .unwrap();
        drop(pending);
    }
    let js = raw_jetstream(&server).await;
    let mut stored = 0;
    for _ in 0..250 {
        stored = js
            .get_stream("EVENTS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages;
        if stored == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored, 10);
}
