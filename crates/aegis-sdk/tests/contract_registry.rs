//! One registry contract, two adapters: registration, heartbeats, expiry and discovery
//! run against a real nats-server and in memory, so the two cannot drift apart.

#[macro_use]
mod backends;

use std::collections::HashMap;
use std::time::Duration;

use aegis_sdk::application::discovery::{CachedDiscovery, Discovery};
use aegis_sdk::application::kv::Kv;
use aegis_sdk::application::registration::{Registration, RegistryOptions};
use aegis_sdk::application::registry::ServiceRegistry;
use aegis_sdk::application::routing::Router;
use aegis_sdk::application::selection::SelectionStrategy;
use aegis_sdk::domain::instance::{instance_key, InstanceStatus, ServiceInstance};
use aegis_sdk::ports::kv::KvOperation;
use aegis_sdk::{ErrorKind, HandlerError, InstanceId, RpcContext, Service, ServiceName};
use backends::Backend;
use futures::StreamExt;
use serde_json::{json, Value};

const SERVICE: &str = "echo-service";

fn options() -> RegistryOptions {
    RegistryOptions::default()
        .heartbeat_interval(Duration::from_millis(500))
        .ttl(Duration::from_secs(2))
}

fn echo_service(instance: &str, registration: Registration) -> Service {
    Service::builder(SERVICE)
        .instance_id(instance)
        .version("2.1.0")
        .rpc("echo", |ctx: RpcContext, _params: Value| async move {
            Ok::<_, HandlerError>(json!({"instance": ctx.instance_id().as_str()}))
        })
        .with_registration(registration)
        .build()
        .unwrap()
}

fn ids(instances: &[ServiceInstance]) -> Vec<String> {
    instances.iter().map(|i| i.instance_id.clone()).collect()
}

/// Waits (on change notifications) until `done` holds, up to `limit`.
async fn wait_for(cache: &CachedDiscovery, limit: Duration, done: impl Fn() -> bool) -> bool {
    let mut changes = cache.changes();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return done();
        }
    }
}

async fn a_started_service_registers_by_the_contract_and_deregisters_on_stop(backend: Backend) {
    let client = backend.client().await;
    let service = echo_service("echo-a", Registration::new(options()));
    service.start(&client).await.unwrap();

    let registry = ServiceRegistry::open(&backend.client().await)
        .await
        .unwrap();
    let key = instance_key(
        &ServiceName::new(SERVICE).unwrap(),
        &InstanceId::new("echo-a").unwrap(),
    );
    let raw = registry
        .store()
        .get(&key)
        .await
        .unwrap()
        .expect("registered");
    let value: Value = serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(value["serviceName"], SERVICE);
    assert_eq!(value["instanceId"], "echo-a");
    assert_eq!(value["version"], "2.1.0");
    assert_eq!(value["status"], "ACTIVE");
    assert!(value["lastHeartbeat"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(value["metadata"]["methods"], json!(["echo"]));
    let status = registry.store().status().await.unwrap();
    assert_eq!(status.bucket, "service_registry");
    assert!(status.ttl_enabled);

    service.stop().await.unwrap();
    assert!(
        registry.store().get(&key).await.unwrap().is_none(),
        "deregistered"
    );
}

async fn heartbeats_keep_an_entry_past_its_ttl(backend: Backend) {
    let client = backend.client().await;
    let service = echo_service("echo-a", Registration::new(options()));
    service.start(&client).await.unwrap();
    let registry = ServiceRegistry::open(&client).await.unwrap();
    let (name, id) = (service.name().clone(), service.instance_id().clone());
    let first = registry.get(&name, &id).await.unwrap().unwrap();

    // Three TTLs later, still there, with a later heartbeat.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = registry
        .get(&name, &id)
        .await
        .unwrap()
        .expect("still registered");
    assert!(later.last_heartbeat_at().unwrap() > first.last_heartbeat_at().unwrap());

    // A deleted entry is back after the next heartbeat.
    registry.deregister(&name, &id).await.unwrap();
    assert!(registry.get(&name, &id).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(registry.get(&name, &id).await.unwrap().is_some());
    service.stop().await.unwrap();
}

async fn an_entry_without_heartbeats_expires(backend: Backend) {
    // As a crashed instance leaves it: written once with a TTL, never renewed.
    let client = backend.client().await;
    let registry = ServiceRegistry::open(&client).await.unwrap();
    let mut watch = registry.watch().await.unwrap();
    let cache = Discovery::open(&client)
        .await
        .unwrap()
        .cached(&client)
        .await
        .unwrap();
    let name = ServiceName::new(SERVICE).unwrap();
    let mut entry = ServiceInstance::new(&name, &InstanceId::new("echo-dead").unwrap(), "1.0.0");
    entry.last_heartbeat = chrono::Utc::now().to_rfc3339();
    registry
        .register(&entry, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(
        wait_for(&cache, Duration::from_secs(5), || {
            ids(&cache.instances(SERVICE, false)) == ["echo-dead"]
        })
        .await
    );

    // A plain watcher sees it go as an expiry of its key; discovery drops it.
    let expiry = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let change = watch.next().await.unwrap();
            if change.key.ends_with("__echo-dead") && change.operation != KvOperation::Put {
                return change;
            }
        }
    })
    .await
    .expect("expiry seen");
    assert_eq!(expiry.operation, KvOperation::Expired);
    assert!(
        wait_for(&cache, Duration::from_secs(5), || {
            cache.instances(SERVICE, false).is_empty()
        })
        .await
    );
    assert!(registry
        .get(&name, &InstanceId::new("echo-dead").unwrap())
        .await
        .unwrap()
        .is_none());
}

async fn status_changes_reach_discovery_and_filter_healthy_lists(backend: Backend) {
    let client = backend.client().await;
    let registration = Registration::new(options().heartbeat_interval(Duration::from_secs(1)));
    let handle = registration.handle();
    let service = echo_service("echo-a", registration);
    service.start(&backend.client().await).await.unwrap();
    let other = echo_service("echo-b", Registration::new(options()));
    other.start(&backend.client().await).await.unwrap();

    let cache = Discovery::open(&client)
        .await
        .unwrap()
        .cached(&client)
        .await
        .unwrap();
    assert_eq!(
        ids(&cache.instances(SERVICE, true)),
        vec!["echo-a", "echo-b"]
    );
    for status in [
        InstanceStatus::Unhealthy,
        InstanceStatus::Standby,
        InstanceStatus::Shutdown,
    ] {
        handle.set_status(status);
        let seen = wait_for(&cache, Duration::from_secs(5), || {
            cache
                .instances(SERVICE, false)
                .iter()
                .any(|i| i.instance_id == "echo-a" && i.status == status)
        })
        .await;
        assert!(seen, "{status} not seen");
        let healthy = ids(&cache.instances(SERVICE, true));
        assert_eq!(healthy.contains(&"echo-a".to_owned()), status.is_serving());
        assert!(healthy.contains(&"echo-b".to_owned()));
    }

    let discovery = Discovery::open(&client).await.unwrap();
    assert_eq!(discovery.instances(SERVICE, false).await.unwrap().len(), 2);
    assert_eq!(
        ids(&discovery.instances(SERVICE, true).await.unwrap()),
        vec!["echo-b"]
    );
    assert_eq!(
        discovery
            .instances("bad name", true)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidName
    );
    service.stop().await.unwrap();
    other.stop().await.unwrap();
}

async fn entries_written_by_python_peers_are_read_and_judged_stale(backend: Backend) {
    let client = backend.client().await;
    let registry = ServiceRegistry::open(&client).await.unwrap();
    let kv = Kv::new(registry.store().clone());
    let fresh = chrono::Utc::now().to_rfc3339();
    kv.put(
        "service-instances__py-service__py-1",
        &json!({"service_name": "py-service", "instance_id": "py-1", "version": "1.0.0",
                "status": "ACTIVE", "last_heartbeat": fresh, "metadata": {}}),
    )
    .await
    .unwrap();
    kv.put(
        "service-instances__py-service__py-2",
        &json!({"serviceName": "py-service", "instanceId": "py-2", "version": "1.0.0",
                "status": "ACTIVE", "lastHeartbeat": "2020-01-01T00:00:00+00:00", "metadata": {}}),
    )
    .await
    .unwrap();

    let discovery = Discovery::open(&client).await.unwrap();
    assert_eq!(
        ids(&discovery.instances("py-service", false).await.unwrap()),
        vec!["py-1", "py-2"]
    );
    assert_eq!(
        ids(&discovery.instances("py-service", true).await.unwrap()),
        vec!["py-1"]
    );
    let cache = discovery.cached(&client).await.unwrap();
    assert_eq!(ids(&cache.instances("py-service", true)), vec!["py-1"]);
}

async fn routed_counts(router: &Router, calls: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..calls {
        let reply: Value = router.call(SERVICE, "echo", json!({})).await.unwrap();
        *counts
            .entry(reply["instance"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

async fn routers_spread_or_stick_over_registered_instances(backend: Backend) {
    let mut services = Vec::new();
    for id in ["echo-1", "echo-2", "echo-3"] {
        let service = echo_service(id, Registration::new(options()));
        service.start(&backend.client().await).await.unwrap();
        services.push(service);
    }
    let client = backend.client().await;
    let cache = Discovery::open(&client)
        .await
        .unwrap()
        .cached(&client)
        .await
        .unwrap();
    assert!(
        wait_for(&cache, Duration::from_secs(5), || {
            cache.instances(SERVICE, true).len() == 3
        })
        .await
    );

    let router = Router::new(&client, cache.clone(), SelectionStrategy::RoundRobin);
    let counts = routed_counts(&router, 90).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n == 30), "{counts:?}");

    let sticky = Router::new(&client, cache.clone(), SelectionStrategy::Sticky);
    sticky.selector().prefer(SERVICE, "echo-2");
    let counts = routed_counts(&sticky, 30).await;
    assert_eq!(counts, HashMap::from([("echo-2".to_owned(), 30)]));

    // The preferred instance stops (and deregisters): the router moves, and stays.
    services.remove(1).stop().await.unwrap();
    assert!(
        wait_for(&cache, Duration::from_secs(5), || {
            !ids(&cache.instances(SERVICE, false)).contains(&"echo-2".to_owned())
        })
        .await
    );
    let counts = routed_counts(&sticky, 30).await;
    assert_eq!(counts.len(), 1, "sticks to one new instance: {counts:?}");
    assert!(!counts.contains_key("echo-2"));

    let err = router
        .call::<_, Value>("nobody", "echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);
    for service in services {
        service.stop().await.unwrap();
    }
}

async fn a_registration_that_never_expires_starts(backend: Backend) {
    let forever = RegistryOptions::default()
        .heartbeat_interval(Duration::from_secs(3600))
        .ttl(Duration::MAX);
    let service = echo_service("echo-forever", Registration::new(forever));
    service.start(&backend.client().await).await.unwrap();
    let registry = ServiceRegistry::open(&backend.client().await)
        .await
        .unwrap();
    let key = instance_key(
        &ServiceName::new(SERVICE).unwrap(),
        &InstanceId::new("echo-forever").unwrap(),
    );
    assert!(registry.store().get(&key).await.unwrap().is_some());
    service.stop().await.unwrap();
}

contract!(
    a_started_service_registers_by_the_contract_and_deregisters_on_stop,
    status_changes_reach_discovery_and_filter_healthy_lists,
    entries_written_by_python_peers_are_read_and_judged_stale,
    routers_spread_or_stick_over_registered_instances,
    a_registration_that_never_expires_starts;
    paused:
    heartbeats_keep_an_entry_past_its_ttl,
    an_entry_without_heartbeats_expires,
);
