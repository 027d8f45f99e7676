//! Service registry, discovery and routed calls on a real nats-server started by each
//! test.

#![allow(clippy::print_stderr)] // measured latencies, shown with --nocapture

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aegis_sdk::application::discovery::{CachedDiscovery, Discovery};
use aegis_sdk::application::registration::{Registration, RegistryOptions};
use aegis_sdk::application::registry::ServiceRegistry;
use aegis_sdk::application::routing::Router;
use aegis_sdk::application::selection::SelectionStrategy;
use aegis_sdk::domain::instance::{instance_key, InstanceStatus, ServiceInstance};
use aegis_sdk::{
    Client, ConnectOptions, ErrorKind, HandlerError, InstanceId, RpcContext, Service, ServiceName,
};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

const SERVICE: &str = "echo-service";

async fn connect(url: &str) -> Client {
    Client::connect(&ConnectOptions::new(url))
        .await
        .expect("connect")
}

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
        .rpc("slow", |ctx: RpcContext, _params: Value| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, HandlerError>(json!({"instance": ctx.instance_id().as_str()}))
        })
        .with_registration(registration)
        .build()
        .unwrap()
}

/// A service instance on a runtime of its own, so that it can be killed without any
/// stop (no deregistration): shutting the runtime down drops its tasks and connection.
struct Remote {
    runtime: Option<tokio::runtime::Runtime>,
    _service: Service,
}

impl Remote {
    fn start(url: &str, instance: &str) -> Remote {
        let (url, instance) = (url.to_owned(), instance.to_owned());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let service = runtime.block_on(async {
                let service = echo_service(&instance, Registration::new(options()));
                service.start(&connect(&url).await).await.unwrap();
                service
            });
            Remote {
                runtime: Some(runtime),
                _service: service,
            }
        })
        .join()
        .unwrap()
    }

    fn kill(mut self) {
        self.runtime.take().unwrap().shutdown_background();
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn cache(client: &Client) -> CachedDiscovery {
    Discovery::open(client)
        .await
        .unwrap()
        .cached(client)
        .await
        .unwrap()
}

fn ids(instances: &[ServiceInstance]) -> Vec<String> {
    instances.iter().map(|i| i.instance_id.clone()).collect()
}

/// Waits (on change notifications, not by polling) until `done` holds, up to `limit`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_service_registers_by_the_contract_and_deregisters_on_stop() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let service = echo_service("echo-a", Registration::new(options()));
    service.start(&client).await.unwrap();

    let registry = ServiceRegistry::open(&client).await.unwrap();
    let key = instance_key(
        &ServiceName::new(SERVICE).unwrap(),
        &InstanceId::new("echo-a").unwrap(),
    );
    assert_eq!(key, "service-instances__echo-service__echo-a");
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
    assert!(value["stickyActiveGroup"].is_null());
    assert!(value["stickyActiveStatus"].is_null());
    let metadata = &value["metadata"];
    assert_eq!(metadata["methods"], json!(["echo", "slow"]));
    assert_eq!(metadata["pid"], json!(std::process::id()));
    assert!(metadata["host"].is_string());
    assert!(metadata["startedAt"].is_string());
    assert!(metadata["subscriptions"].is_array());
    assert_eq!(metadata["heartbeatIntervalSeconds"], json!(0.5));
    assert_eq!(
        registry.store().status().await.unwrap().bucket,
        "service_registry"
    );

    service.stop().await.unwrap();
    assert!(
        registry.store().get(&key).await.unwrap().is_none(),
        "deregistered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_is_back_after_the_next_heartbeat() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let service = echo_service("echo-a", Registration::new(options()));
    service.start(&client).await.unwrap();
    let registry = ServiceRegistry::open(&client).await.unwrap();
    let (name, id) = (service.name().clone(), service.instance_id().clone());
    let before = registry.get(&name, &id).await.unwrap().unwrap();

    registry.deregister(&name, &id).await.unwrap();
    assert!(registry.get(&name, &id).await.unwrap().is_none());

    let deadline = Instant::now() + Duration::from_secs(5);
    let back = loop {
        if let Some(entry) = registry.get(&name, &id).await.unwrap() {
            break entry;
        }
        assert!(Instant::now() < deadline, "entry not re-created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(back.last_heartbeat_at().unwrap() > before.last_heartbeat_at().unwrap());
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_reach_discovery_and_filter_healthy_lists() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let registration = Registration::new(options().heartbeat_interval(Duration::from_secs(1)));
    let handle = registration.handle();
    let service = echo_service("echo-a", registration);
    service.start(&client).await.unwrap();
    let other = echo_service("echo-b", Registration::new(options()));
    other.start(&client).await.unwrap();

    let cache = cache(&client).await;
    assert_eq!(
        ids(&cache.instances(SERVICE, true)),
        vec!["echo-a", "echo-b"]
    );

    for status in [
        InstanceStatus::Unhealthy,
        InstanceStatus::Standby,
        InstanceStatus::Shutdown,
    ] {
        let started = Instant::now();
        handle.set_status(status);
        let seen = wait_for(&cache, Duration::from_secs(5), || {
            cache
                .instances(SERVICE, false)
                .iter()
                .any(|i| i.instance_id == "echo-a" && i.status == status)
        })
        .await;
        assert!(seen, "{status} not seen");
        eprintln!("status {status} visible after {:?}", started.elapsed());
        let healthy = ids(&cache.instances(SERVICE, true));
        assert_eq!(healthy.contains(&"echo-a".to_owned()), status.is_serving());
        assert!(healthy.contains(&"echo-b".to_owned()));
    }

    // The uncached listing agrees.
    let discovery = Discovery::open(&client).await.unwrap();
    assert_eq!(
        ids(&discovery.instances(SERVICE, false).await.unwrap()).len(),
        2
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_disappears_within_ttl_plus_one_second() {
    let server = NatsServer::start();
    let url = server.url();
    let client = connect(&url).await;
    let mut remotes: Vec<Remote> = ["echo-1", "echo-2", "echo-3"]
        .iter()
        .map(|id| Remote::start(&url, id))
        .collect();
    let cache = cache(&client).await;
    assert_eq!(
        ids(&cache.instances(SERVICE, true)),
        vec!["echo-1", "echo-2", "echo-3"]
    );

    let mut watch = ServiceRegistry::open(&client)
        .await
        .unwrap()
        .watch()
        .await
        .unwrap();
    remotes.remove(1).kill();
    let killed = Instant::now();

    let gone = wait_for(&cache, Duration::from_secs(10), || {
        !ids(&cache.instances(SERVICE, false)).contains(&"echo-2".to_owned())
    })
    .await;
    let elapsed = killed.elapsed();
    assert!(gone, "echo-2 still listed");
    eprintln!("killed instance gone from discovery after {elapsed:?}");
    assert!(
        elapsed <= options().ttl + Duration::from_secs(1),
        "gone after {elapsed:?}"
    );
    assert_eq!(
        ids(&cache.instances(SERVICE, true)),
        vec!["echo-1", "echo-3"]
    );

    // A plain watcher saw it go, as an expiry of its key.
    let expiry = loop {
        let change =
            tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut watch))
                .await
                .expect("expiry seen")
                .unwrap();
        if change.key.ends_with("__echo-2")
            && change.operation != aegis_sdk::ports::kv::KvOperation::Put
        {
            break change;
        }
    };
    assert_eq!(expiry.operation, aegis_sdk::ports::kv::KvOperation::Expired);

    // The others keep heartbeating past several TTLs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ids(&cache.instances(SERVICE, true)),
        vec!["echo-1", "echo-3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_recovers_after_an_outage_and_discovery_says_it_serves_stale_data() {
    let mut server = NatsServer::start();
    let client = connect(&server.url()).await;
    let service = echo_service("echo-a", Registration::new(options()));
    service.start(&client).await.unwrap();
    let cache = cache(&client).await;
    assert!(cache.registry_reachable());
    assert_eq!(ids(&cache.instances(SERVICE, true)), vec!["echo-a"]);

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.registry_reachable() {
        assert!(Instant::now() < deadline, "outage not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Longer than the TTL: on the server, the entry would have expired by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ids(&cache.instances(SERVICE, false)),
        vec!["echo-a"],
        "last known list served"
    );

    server.start_again();
    let registry = ServiceRegistry::open(&client).await;
    let registry = match registry {
        Ok(registry) => registry,
        Err(_) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ServiceRegistry::open(&client).await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = registry
            .get(service.name(), service.instance_id())
            .await
            .ok()
            .flatten();
        if entry.is_some_and(|e| !e.is_stale(chrono::Utc::now(), Duration::from_secs(1))) {
            break;
        }
        assert!(Instant::now() < deadline, "heartbeat did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_for(&cache, Duration::from_secs(5), || cache
            .registry_reachable())
        .await
    );
    assert!(
        wait_for(&cache, Duration::from_secs(5), || {
            ids(&cache.instances(SERVICE, true)) == vec!["echo-a"]
        })
        .await
    );
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sees_new_and_vanished_instances_without_polling() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let cache = cache(&client).await;
    assert!(cache.instances(SERVICE, false).is_empty());

    let service = echo_service("echo-new", Registration::new(options()));
    service.start(&client).await.unwrap();
    let started = Instant::now();
    assert!(
        wait_for(&cache, Duration::from_secs(5), || !cache
            .instances(SERVICE, true)
            .is_empty())
        .await
    );
    eprintln!("new instance visible after {:?}", started.elapsed());

    service.stop().await.unwrap();
    let stopped = Instant::now();
    assert!(
        wait_for(&cache, Duration::from_secs(5), || cache
            .instances(SERVICE, false)
            .is_empty())
        .await
    );
    eprintln!("stopped instance gone after {:?}", stopped.elapsed());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_300_calls_evenly_and_queue_group_calls_still_work() {
    let server = NatsServer::start();
    let url = server.url();
    let client = connect(&url).await;
    let _remotes: Vec<Remote> = ["echo-1", "echo-2", "echo-3"]
        .iter()
        .map(|id| Remote::start(&url, id))
        .collect();
    let router = Router::new(&client, cache(&client).await, SelectionStrategy::RoundRobin);

    let counts = routed_counts(&router, 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n == 100), "{counts:?}");

    let random = Router::new(
        &client,
        router.discovery().clone(),
        SelectionStrategy::Random,
    );
    let counts = routed_counts(&random, 150).await;
    assert_eq!(counts.len(), 3, "random reaches every instance: {counts:?}");

    // Least outstanding: three slow calls at once land on three instances.
    let least = Router::new(
        &client,
        router.discovery().clone(),
        SelectionStrategy::LeastOutstanding,
    );
    let replies = futures::future::join_all((0..3).map(|_| {
        let least = least.clone();
        async move {
            least
                .call::<_, Value>(SERVICE, "slow", json!({}))
                .await
                .unwrap()
        }
    }))
    .await;
    let mut instances: Vec<&str> = replies
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    instances.sort_unstable();
    assert_eq!(instances, vec!["echo-1", "echo-2", "echo-3"]);

    let reply: Value = client.call(SERVICE, "echo", json!({})).await.unwrap();
    assert!(reply["instance"].as_str().unwrap().starts_with("echo-"));

    assert_eq!(
        router
            .call::<_, Value>("nobody", "echo", json!({}))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NoResponders
    );
    // A name that could never be registered is the caller's mistake.
    for (service, method) in [("bad name", "echo"), (SERVICE, "bad-method")] {
        let err = router
            .call::<_, Value>(service, method, json!({}))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidName,
            "{service} {method}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sends_every_call_to_the_preferred_instance_and_moves_when_it_dies() {
    let server = NatsServer::start();
    let url = server.url();
    let client = connect(&url).await;
    let mut remotes: Vec<Remote> = ["echo-1", "echo-2", "echo-3"]
        .iter()
        .map(|id| Remote::start(&url, id))
        .collect();
    let router = Router::new(&client, cache(&client).await, SelectionStrategy::Sticky);
    router.selector().prefer(SERVICE, "echo-2");

    let counts = routed_counts(&router, 100).await;
    assert_eq!(counts, HashMap::from([("echo-2".to_owned(), 100)]));

    remotes.remove(1).kill();
    // Once the server has dropped the dead connection (its registry entry has not
    // expired yet), routed calls still succeed: nobody answers on its subject, so the
    // router chooses again, and sticks to that choice...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let direct = client
            .call::<_, Value>(SERVICE, "echo", json!({}))
            .instance("echo-2")
            .timeout(Duration::from_millis(200))
            .await;
        match direct {
            Err(e) if e.kind() == ErrorKind::NoResponders => break,
            _ => assert!(Instant::now() < deadline, "echo-2 still answers"),
        }
    }
    let counts = routed_counts(&router, 50).await;
    assert_eq!(counts.len(), 1, "sticks to one new instance: {counts:?}");
    let moved = counts.keys().next().unwrap().clone();
    assert_ne!(moved, "echo-2");

    // ...and once the registry drops it, the new choice stays.
    let cache = router.discovery().clone();
    assert!(
        wait_for(&cache, Duration::from_secs(10), || {
            !ids(&cache.instances(SERVICE, false)).contains(&"echo-2".to_owned())
        })
        .await
    );
    let counts = routed_counts(&router, 50).await;
    assert_eq!(counts, HashMap::from([(moved, 50)]));
}
