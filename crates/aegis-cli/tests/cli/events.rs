//! `aegis publish` and `aegis subscribe`, one CLI process to another.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aegis_test_support::NatsServer;
use serde_json::{json, Value};

use crate::support::{run, Spawned};

const READY: &str = "subscribed to events.";

#[test]
fn subscribe_prints_matching_events_and_stops_after_count() {
    let server = NatsServer::start();
    let url = server.url();

    let subscriber = Spawned::start(
        &url,
        &[
            "subscribe",
            "order.*",
            "--json",
            "--count",
            "2",
            "--for",
            "30",
        ],
    );
    subscriber.wait_stderr(READY, Duration::from_secs(10));

    let published = run(&url, &["publish", "payment.done", r#"{"id": 0}"#, "--json"])
        .ok()
        .json();
    assert_eq!(published["subject"], "events.payment.done");
    assert_eq!(published["stream"], "EVENTS");
    assert!(published["sequence"].as_u64().unwrap() >= 1);
    run(&url, &["publish", "order.created", r#"{"id": 1}"#]).ok();
    let human = run(&url, &["publish", "order.shipped", r#"{"id": 2}"#]).ok();
    assert!(
        human.stdout.starts_with("published events.order.shipped"),
        "{human:?}"
    );

    let (code, lines) = subscriber.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{lines:?}");
    assert_eq!(events[0]["subject"], "events.order.created");
    assert_eq!(events[0]["payload"], json!({"id": 1}));
    assert_eq!(events[0]["domain"], "order");
    assert_eq!(events[0]["event_type"], "created");
    assert_eq!(events[1]["subject"], "events.order.shipped");
    assert_eq!(events[1]["payload"], json!({"id": 2}));
    assert!(events[1]["sequence"].as_u64() > events[0]["sequence"].as_u64());
}

#[test]
fn compete_subscribers_share_events_and_broadcast_ones_get_all() {
    let server = NatsServer::start();
    let url = server.url();
    let compete: Vec<Spawned> = (0..2)
        .map(|_| {
            Spawned::start(
                &url,
                &[
                    "subscribe",
                    "job.>",
                    "--mode",
                    "compete",
                    "--group",
                    "workers",
                    "--json",
                    "--for",
                    "60",
                ],
            )
        })
        .collect();
    let broadcast = Spawned::start(&url, &["subscribe", "job.>", "--json", "--for", "60"]);
    for subscriber in compete.iter().chain([&broadcast]) {
        subscriber.wait_stderr(READY, Duration::from_secs(10));
    }

    for n in 0..10 {
        run(
            &url,
            &["publish", "job.queued", &format!(r#"{{"n": {n}}}"#)],
        )
        .ok();
    }

    // Every event exactly once across the compete group, every one at the broadcaster.
    let collect = |subscribers: &[&Spawned], want: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while seen.len() < want && Instant::now() < deadline {
            for subscriber in subscribers {
                if let Some(line) = subscriber.next_line(Duration::from_millis(50)) {
                    let event: Value = serde_json::from_str(&line).unwrap();
                    seen.push(event["payload"]["n"].as_u64().unwrap());
                }
            }
        }
        seen
    };
    let shared = collect(&compete.iter().collect::<Vec<_>>(), 10);
    assert_eq!(shared.len(), 10, "{shared:?}");
    assert_eq!(
        shared.iter().copied().collect::<BTreeSet<_>>().len(),
        10,
        "{shared:?}"
    );
    let all = collect(&[&broadcast], 10);
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    // Nothing more arrives: no duplicates in the group.
    for subscriber in &compete {
        assert_eq!(subscriber.next_line(Duration::from_millis(300)), None);
    }
}

#[test]
fn publish_and_subscribe_refuse_bad_arguments() {
    let server = NatsServer::start();
    let url = server.url();
    assert!(run(&url, &["publish", "order", "{}"])
        .error(2)
        .contains("DOMAIN.TYPE"));
    assert!(run(&url, &["publish", "order.created", "{oops"])
        .error(2)
        .contains("not valid JSON"));
    assert!(run(&url, &["publish", "order.created", "[1]"])
        .error(2)
        .contains("JSON object"));
    run(&url, &["publish", "order.*", "{}"]).error(2);
    run(&url, &["subscribe", "order.>.x"]).error(2);
    // Patterns and events are relative to `events.`: the prefix is refused with a hint.
    let failed = run(&url, &["subscribe", "events.order.*"]);
    assert!(failed.error(2).contains("write order.*"), "{failed:?}");
    let failed = run(&url, &["publish", "events.order.created", "{}"]);
    assert!(
        failed.error(2).contains("write order.created"),
        "{failed:?}"
    );
    // The payload is one thing: "payload: not valid JSON", not "payload are".
    let failed = run(&url, &["publish", "order.created", "{oops"]);
    assert!(
        failed.error(2).contains("payload: not valid JSON"),
        "{failed:?}"
    );
    run(&url, &["subscribe", "order.*", "--mode", "sometimes"]).error(2);
    run(&url, &["subscribe", "order.*", "--group", "no.dots"]).error(2);
}
