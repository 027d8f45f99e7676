//! KV, registry and discovery benchmark, in one run against one local nats-server
//! started here.
//!
//! ```text
//! cargo bench -p aegis-sdk --bench kv
//! ```
//!
//! Prints: cached instance selection p50/p99 (target p99 under 10 µs); listing 100
//! registered instances p50/p99 (target under 10 ms); how long a registry change takes
//! to reach a cached discovery; and KV get and put p50/p99 of this SDK beside raw
//! async-nats KV on the same bucket, with the SDK/raw ratios. Everything runs on a
//! current-thread runtime: the server takes about one of our two cores.

#![allow(clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_sdk::application::discovery::Discovery;
use aegis_sdk::application::kv::Kv;
use aegis_sdk::application::registry::ServiceRegistry;
use aegis_sdk::application::routing::Router;
use aegis_sdk::application::selection::SelectionStrategy;
use aegis_sdk::domain::instance::ServiceInstance;
use aegis_sdk::ports::kv::{BucketConfig, KvStore};
use aegis_sdk::{Client, ConnectOptions, InstanceId, ServiceName};
use aegis_test_support::NatsServer;
use bytes::Bytes;

const SELECTIONS: usize = 200_000;
const LISTINGS: usize = 200;
const KV_OPS: usize = 5_000;
const PROPAGATIONS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

fn instance(service: &str, id: &str) -> ServiceInstance {
    let mut entry = ServiceInstance::new(
        &ServiceName::new(service).unwrap(),
        &InstanceId::new(id).unwrap(),
        "1.0.0",
    );
    entry
        .metadata
        .insert("methods".into(), serde_json::json!(["echo"]));
    entry
}

async fn time_async<F, Fut>(n: usize, mut op: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed());
    }
    samples
}

async fn run(server: &NatsServer) {
    let client = Client::connect(&ConnectOptions::new(server.url()))
        .await
        .unwrap();
    let registry = ServiceRegistry::open(&client).await.unwrap();

    // Three instances of one service, a hundred of another.
    for i in 0..3 {
        registry
            .register(&instance("echo", &format!("echo-{i}")), None)
            .await
            .unwrap();
    }
    for i in 0..100 {
        registry
            .register(&instance("hundred", &format!("hundred-{i:03}")), None)
            .await
            .unwrap();
    }
    let discovery = Discovery::open(&client).await.unwrap();
    let cache = discovery.cached(&client).await.unwrap();

    // Cached selection.
    let router = Router::new(&client, cache.clone(), SelectionStrategy::RoundRobin);
    for _ in 0..10_000 {
        router.select("echo").unwrap();
    }
    let mut samples = Vec::with_capacity(SELECTIONS);
    for _ in 0..SELECTIONS {
        let started = Instant::now();
        let chosen = router.select("echo").unwrap();
        samples.push(started.elapsed());
        std::hint::black_box(chosen);
    }
    let (select_p50, select_p99) = summary(samples);

    // Listing 100 registered instances from the registry (no cache).
    let samples = time_async(LISTINGS, |_| async {
        let list = discovery.instances("hundred", false).await.unwrap();
        assert_eq!(list.len(), 100);
    })
    .await;
    let (list_p50, list_p99) = summary(samples);

    // A registry write, until the cache has applied it.
    let mut changes = cache.changes();
    let mut samples = Vec::with_capacity(PROPAGATIONS);
    for i in 0..PROPAGATIONS {
        let mut entry = instance("echo", &format!("echo-{}", 3 + i % 5));
        entry.version = format!("1.0.{i}");
        let started = Instant::now();
        registry.register(&entry, None).await.unwrap();
        while !cache
            .instances("echo", false)
            .iter()
            .any(|e| e.version == entry.version)
        {
            changes.changed().await.unwrap();
        }
        samples.push(started.elapsed());
    }
    let (seen_p50, seen_p99) = summary(samples);

    // KV get and put: this SDK against raw async-nats on the same bucket.
    let kv = Kv::open(&client, BucketConfig::new("bench")).await.unwrap();
    let store: Arc<dyn KvStore> = kv.store().clone();
    let raw = async_nats::connect(server.url()).await.unwrap();
    let raw = async_nats::jetstream::new(raw)
        .get_key_value("bench")
        .await
        .unwrap();
    let value = Bytes::from(vec![b'x'; 128]);
    store.put("key", value.clone(), None).await.unwrap();

    let mut figures = Vec::new();
    for round in 0..2 {
        let sdk_put = time_async(KV_OPS, |i| {
            let store = store.clone();
            let value = value.clone();
            async move {
                store
                    .put(&format!("k{}", i % 100), value, None)
                    .await
                    .unwrap();
            }
        })
        .await;
        let raw_put = time_async(KV_OPS, |i| {
            let raw = raw.clone();
            let value = value.clone();
            async move {
                raw.put(format!("k{}", i % 100), value).await.unwrap();
            }
        })
        .await;
        let sdk_get = time_async(KV_OPS, |i| {
            let store = store.clone();
            async move {
                store.get(&format!("k{}", i % 100)).await.unwrap().unwrap();
            }
        })
        .await;
        let raw_get = time_async(KV_OPS, |i| {
            let raw = raw.clone();
            async move {
                raw.get(format!("k{}", i % 100)).await.unwrap().unwrap();
            }
        })
        .await;
        // The first round warms both up; report the second.
        if round == 1 {
            figures = vec![
                ("get", summary(sdk_get), summary(raw_get)),
                ("put", summary(sdk_put), summary(raw_put)),
            ];
        }
    }

    println!("cached selection (round robin, 3 instances): p50 {select_p50:?}  p99 {select_p99:?}  (target p99 < 10 µs)");
    println!("list 100 registered instances:               p50 {list_p50:?}  p99 {list_p99:?}  (target < 10 ms)");
    println!("registry change seen by cached discovery:    p50 {seen_p50:?}  p99 {seen_p99:?}  (target < 100 ms)");
    for (op, (sdk_p50, sdk_p99), (raw_p50, raw_p99)) in figures {
        println!(
            "kv {op}: sdk p50 {sdk_p50:?} p99 {sdk_p99:?} | raw async-nats p50 {raw_p50:?} p99 {raw_p99:?} | p50 ratio {:.2}",
            sdk_p50.as_secs_f64() / raw_p50.as_secs_f64()
        );
    }
}

fn main() {
    let server = NatsServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&server));
}
