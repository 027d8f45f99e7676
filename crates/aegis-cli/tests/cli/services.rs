//! `aegis services` (and a successful `aegis call`) against in-process instances.

use std::time::Duration;

use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::{Client, ConnectOptions, HandlerError, RpcContext, Service};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

use crate::support::{eventually, run, Spawned};

async fn inventory(url: &str, instance: &str) -> Service {
    let service = Service::builder("inventory")
        .instance_id(instance)
        .version("2.1.0")
        .rpc("stock", |ctx: RpcContext, params: Value| async move {
            Ok::<_, HandlerError>(json!({"sku": params["sku"], "by": ctx.instance_id().as_str()}))
        })
        .with_registry(RegistryOptions::default())
        .build()
        .unwrap();
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    service.start(&client).await.unwrap();
    service
}

fn instance_ids(listing: &Value) -> Vec<String> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["instanceId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_lists_instances_as_a_table_or_json() {
    let server = NatsServer::start();
    let url = server.url();

    // Before anything registered: an empty listing, and an unknown service is an error.
    assert!(run(&url, &["services"])
        .ok()
        .stdout
        .contains("no registered instances"));
    assert_eq!(run(&url, &["services", "--json"]).ok().json(), json!([]));

    let first = inventory(&url, "inventory-a").await;
    let second = inventory(&url, "inventory-b").await;

    let listing = run(&url, &["services", "--json"]).ok().json();
    assert_eq!(instance_ids(&listing), ["inventory-a", "inventory-b"]);
    for row in listing.as_array().unwrap() {
        assert_eq!(row["serviceName"], "inventory");
        assert_eq!(row["version"], "2.1.0");
        assert_eq!(row["status"], "ACTIVE");
        let age = row["heartbeatAgeSeconds"].as_f64().unwrap();
        assert!((0.0..30.0).contains(&age), "{row}");
    }

    let table = run(&url, &["services", "inventory"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "SERVICE",
        "INSTANCE",
        "VERSION",
        "STATUS",
        "LEADER",
        "HEARTBEAT",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(lines[1].starts_with("inventory") && lines[1].contains("inventory-a"));
    assert!(lines[2].contains("inventory-b") && lines[2].contains("ACTIVE"));
    assert!(lines[2].contains("s ago"), "{table}");

    // An entry as a Python peer writes it (snake_case, naive timestamp), long silent.
    let python = r#"{"service_name": "legacy", "instance_id": "legacy-1", "version": "0.9.0",
        "status": "ACTIVE", "last_heartbeat": "2026-01-02T03:04:05.123456",
        "sticky_active_group": null, "sticky_active_status": null, "metadata": {}}"#;
    run(
        &url,
        &[
            "kv",
            "put",
            "service_registry",
            "service-instances__legacy__legacy-1",
            python,
        ],
    )
    .ok();
    let table = run(&url, &["services", "legacy"]).ok().stdout;
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains("legacy-1") && row.contains("0.9.0"), "{table}");
    assert!(row.contains("(stale)"), "{table}");
    run(
        &url,
        &[
            "kv",
            "del",
            "service_registry",
            "service-instances__legacy__legacy-1",
        ],
    )
    .ok();

    // An unknown service is one line and exit 1; an invalid name is a usage error.
    let missing = run(&url, &["services", "warehouse"]);
    assert!(missing.error(1).contains("warehouse"));
    run(&url, &["services", "bad name"]).error(2);

    // The registered instances answer calls made with the CLI.
    let reply = run(
        &url,
        &[
            "call",
            "inventory",
            "stock",
            r#"{"sku": "a-1"}"#,
            "--json",
            "--instance",
            "inventory-b",
        ],
    )
    .ok()
    .json();
    assert_eq!(reply, json!({"sku": "a-1", "by": "inventory-b"}));

    first.stop().await.unwrap();
    second.stop().await.unwrap();
    let listing = run(&url, &["services", "--json"]).ok().json();
    assert_eq!(listing, json!([]), "stopped instances deregister");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_watch_refreshes_and_stops_after_count() {
    let server = NatsServer::start();
    let url = server.url();
    let first = inventory(&url, "inventory-a").await;

    // --count ends the watch by itself: exactly that many listings.
    let watch = Spawned::start(
        &url,
        &[
            "services",
            "--watch",
            "--json",
            "--interval",
            "0.1",
            "--count",
            "3",
        ],
    );
    let (code, lines) = watch.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        let listing: Value = serde_json::from_str(line).unwrap();
        assert_eq!(instance_ids(&listing), ["inventory-a"]);
    }

    // A live watch shows an instance that starts while it runs.
    let watch = Spawned::start(
        &url,
        &[
            "services",
            "--watch",
            "--json",
            "--interval",
            "0.2",
            "--for",
            "30",
        ],
    );
    let initial = watch
        .next_line(Duration::from_secs(10))
        .expect("a first listing");
    assert_eq!(
        instance_ids(&serde_json::from_str(&initial).unwrap()),
        ["inventory-a"]
    );
    let second = inventory(&url, "inventory-b").await;
    let mut seen = false;
    while let Some(line) = watch.next_line(Duration::from_secs(10)) {
        let ids = instance_ids(&serde_json::from_str(&line).unwrap());
        if ids == ["inventory-a", "inventory-b"] {
            seen = true;
            break;
        }
    }
    assert!(seen, "the new instance never showed up");
    drop(watch);

    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

/// `aegis leader ledger --json`'s leader, once there is one.
fn current_leader(url: &str) -> Option<String> {
    let shown = run(url, &["leader", "ledger", "--json"]);
    (shown.code == Some(0)).then(|| shown.json()["leader"].as_str().unwrap().to_owned())
}

/// The rows of `aegis services ledger --json`, by instance id.
fn ledger_rows(url: &str) -> Vec<(String, Value)> {
    let listing = run(url, &["services", "ledger", "--json"]);
    if listing.code != Some(0) {
        return Vec::new();
    }
    listing
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["instanceId"].as_str().unwrap().to_owned(), row.clone()))
        .collect()
}

#[test]
fn the_leader_column_follows_the_lease_after_a_leader_is_killed() {
    let server = NatsServer::start();
    let url = server.url();
    // Two single-active `ledger` processes (the demo's nodes), registered.
    let nodes: Vec<(&str, Spawned)> = ["ledger-n0", "ledger-n1"]
        .into_iter()
        .map(|id| {
            (
                id,
                Spawned::start_with_stdin(&url, &["demo-node", "--instance", id]),
            )
        })
        .collect();
    let leader = eventually(Duration::from_secs(15), || current_leader(&url));
    eventually(Duration::from_secs(15), || {
        (ledger_rows(&url).len() == 2).then_some(())
    });
    for (id, row) in ledger_rows(&url) {
        assert_eq!(row["leader"], json!(id == leader), "{row}");
        assert_eq!(row["stale"], json!(false), "{row}");
    }

    // kill -9 the leader: its entry stays (ACTIVE, heartbeat not yet old) until its
    // time-to-live runs out, but the lease moves on at once.
    let (_, killed) = nodes.iter().find(|(id, _)| *id == leader).unwrap();
    killed.signal("KILL");
    let successor = eventually(Duration::from_secs(15), || {
        current_leader(&url).filter(|now| *now != leader)
    });
    let rows = ledger_rows(&url);
    assert_eq!(rows.len(), 2, "the dead entry is still listed: {rows:?}");
    for (id, row) in &rows {
        assert_eq!(row["leader"], json!(*id == successor), "{row}");
    }
    let table = run(&url, &["services", "ledger"]).ok().stdout;
    let leaders: Vec<&str> = table
        .lines()
        .filter(|line| line.contains("leader (default)"))
        .collect();
    assert_eq!(leaders.len(), 1, "{table}");
    assert!(leaders[0].contains(&successor), "{table}");
    let dead = table.lines().find(|line| line.contains(&leader)).unwrap();
    assert!(dead.contains("standby (default)"), "{table}");
}

#[test]
fn entries_that_missed_two_heartbeats_are_marked_stale() {
    let server = NatsServer::start();
    let url = server.url();
    let ago = |secs: i64| {
        (chrono::Utc::now() - chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('Z', "+00:00")
    };
    // Heartbeats every second: 3 s of silence is stale, 1 s is not.
    for (id, age, interval) in [
        ("w-late", 3, 1.0),
        ("w-fresh", 1, 1.0),
        ("w-default", 15, 0.0),
        ("w-default-late", 25, 0.0),
    ] {
        let mut metadata = json!({});
        if interval > 0.0 {
            metadata = json!({"heartbeatIntervalSeconds": interval});
        }
        let entry = json!({
            "serviceName": "worker", "instanceId": id, "version": "1.0.0",
            "status": "ACTIVE", "lastHeartbeat": ago(age),
            "stickyActiveGroup": null, "stickyActiveStatus": null, "metadata": metadata,
        });
        run(
            &url,
            &[
                "kv",
                "put",
                "service_registry",
                &format!("service-instances__worker__{id}"),
                &entry.to_string(),
            ],
        )
        .ok();
    }
    let listing = run(&url, &["services", "worker", "--json"]).ok().json();
    let stale: Vec<(&str, bool)> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["instanceId"].as_str().unwrap(),
                row["stale"].as_bool().unwrap(),
            )
        })
        .collect();
    // Without an interval of its own (a Python peer's entry), an entry gets Python's
    // 10 s: 15 s is not stale, 25 s is.
    assert_eq!(
        stale,
        [
            ("w-default", false),
            ("w-default-late", true),
            ("w-fresh", false),
            ("w-late", true)
        ]
    );
    let table = run(&url, &["services", "worker"]).ok().stdout;
    let late = table.lines().find(|l| l.contains("w-late")).unwrap();
    assert!(late.contains("ACTIVE (stale)"), "{table}");
    let fresh = table.lines().find(|l| l.contains("w-fresh")).unwrap();
    assert!(!fresh.contains("stale"), "{table}");
}
