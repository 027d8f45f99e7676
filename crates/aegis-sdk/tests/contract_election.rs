//! One election contract, two adapters: the lease store and single-active services run
//! against a real nats-server and in memory, so the two cannot drift apart.

#[macro_use]
mod backends;

use std::time::Duration;

use aegis_sdk::application::kv::Kv;
use aegis_sdk::domain::election::{GroupName, LeaderRecord};
use aegis_sdk::ports::kv::BucketConfig;
use aegis_sdk::ports::{LeaseEvent, LeaseStore};
use aegis_sdk::{ErrorKind, FailoverPolicy, HandlerError, RpcContext, Service, ServiceName};
use backends::Backend;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

async fn lease_store(backend: &Backend, service: &str) -> std::sync::Arc<dyn LeaseStore> {
    let client = backend.client().await;
    client
        .backend()
        .expect("a client with a backend")
        .lease_store(&ServiceName::new(service).unwrap(), &GroupName::default())
        .await
        .unwrap()
}

async fn lease_store_keeps_its_contract(backend: Backend) {
    let store = lease_store(&backend, "lease-check").await;
    let ttl = Duration::from_secs(1);
    let a = LeaderRecord::new("a");
    let b = LeaderRecord::new("b");
    let mut watch = store.watch().await.unwrap();
    assert_eq!(store.current().await.unwrap(), None);

    // Atomic create: one holder at a time.
    let first = store.try_acquire(&a, ttl).await.unwrap();
    let err = store.try_acquire(&b, ttl).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let current = store.current().await.unwrap().unwrap();
    assert_eq!(current.revision, first);
    assert_eq!(current.record.unwrap().instance_id, "a");
    match watch.next().await.unwrap().unwrap() {
        LeaseEvent::Put(entry) => assert_eq!(entry.revision, first),
        other => panic!("expected the first term, got {other:?}"),
    }

    // Revision-checked renewal and release.
    let second = store.renew(&a, first, ttl).await.unwrap();
    assert!(second > first);
    let err = store.renew(&b, first, ttl).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    let err = store.release(first).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    store.release(second).await.unwrap();
    assert_eq!(store.current().await.unwrap(), None);

    // Created again over the delete marker, and still with a TTL: unrenewed, it is
    // removed and the watch hears of it.
    let third = store.try_acquire(&b, ttl).await.unwrap();
    let written = Instant::now();
    let mut seen = Vec::new();
    let expired = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = watch.next().await {
            let event = event.unwrap();
            seen.push(event.clone());
            if matches!(event, LeaseEvent::Gone { revision } if revision > third) {
                return;
            }
        }
    })
    .await;
    assert!(expired.is_ok(), "no expiry; saw {seen:?}");
    assert!(written.elapsed() >= Duration::from_millis(900));
    // The watch saw the renewal, the release and the new term in order.
    assert!(
        matches!(seen[0], LeaseEvent::Put(ref e) if e.revision == second),
        "{seen:?}"
    );
    assert!(
        matches!(seen[1], LeaseEvent::Gone { revision } if revision > second),
        "{seen:?}"
    );
    assert!(
        matches!(seen[2], LeaseEvent::Put(ref e) if e.revision == third),
        "{seen:?}"
    );
    assert_eq!(store.current().await.unwrap(), None);
    assert!(store.try_acquire(&a, ttl).await.unwrap() > third);
}

async fn renewed_lease_outlives_its_ttl(backend: Backend) {
    let store = lease_store(&backend, "renewals").await;
    let record = LeaderRecord::new("a");
    let ttl = Duration::from_secs(1);
    let mut revision = store.try_acquire(&record, ttl).await.unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        revision = store.renew(&record.renewed(), revision, ttl).await.unwrap();
    }
    assert_eq!(store.current().await.unwrap().unwrap().revision, revision);
    let err = store
        .try_acquire(&LeaderRecord::new("b"), ttl)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
}

fn ledger(instance: &str) -> Service {
    Service::builder("ledger")
        .instance_id(instance)
        .single_active("default", FailoverPolicy::aggressive())
        .exclusive_rpc("work", |ctx: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!({
                "instance": ctx.instance_id().as_str(),
                "token": ctx.fencing_token(),
            }))
        })
        .rpc("status", |ctx: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!({"instance": ctx.instance_id().as_str()}))
        })
        .build()
        .unwrap()
}

/// The one leader among `services`, once there is exactly one.
async fn await_one_leader(services: &[Service]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<usize> = services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.leadership().unwrap().is_leader())
            .map(|(i, _)| i)
            .collect();
        if let [one] = leaders[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "leaders: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn single_active_service_elects_one_leader_and_hands_over(backend: Backend) {
    let services: Vec<Service> = (0..3).map(|i| ledger(&format!("ledger-{i}"))).collect();
    for service in &services {
        service.start(&backend.client().await).await.unwrap();
    }
    let client = backend.client().await;
    let leader = await_one_leader(&services).await;
    let leader_id = services[leader].instance_id().to_string();

    // The lease, laid out as the wire contract has it.
    let bucket = Kv::open(
        &backend.client().await,
        BucketConfig::new("election_ledger"),
    )
    .await
    .unwrap();
    let record = bucket
        .get::<Value>("sticky-active.ledger.default.leader")
        .await
        .unwrap()
        .expect("leader key")
        .value;
    assert_eq!(record["instance_id"], leader_id.as_str());
    assert!(record["elected_at"].is_f64() && record["last_heartbeat"].is_f64());
    assert!(record["metadata"].is_object());

    // Exclusive calls reach the leader, whoever takes them from the queue group.
    for _ in 0..10 {
        let reply: Value = client.call("ledger", "work", json!({})).await.unwrap();
        assert_eq!(reply["instance"], leader_id.as_str());
        assert!(reply["token"].as_u64().is_some(), "{reply}");
    }
    // A standby asked directly refuses with the code Python callers look for.
    let standby = services[(leader + 1) % 3].instance_id().to_string();
    let refusal = client
        .call::<_, Value>("ledger", "work", json!({}))
        .instance(standby.as_str())
        .await
        .unwrap_err();
    assert_eq!(refusal.kind(), ErrorKind::NotActive);
    assert_eq!(
        refusal.message(),
        format!("NOT_ACTIVE: instance {standby} is standby for group default")
    );

    // The leader stops: another instance takes over, with a later fencing token.
    let old_token = services[leader]
        .leadership()
        .unwrap()
        .fencing_token()
        .unwrap();
    services[leader].stop().await.unwrap();
    let rest: Vec<Service> = services
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, s)| s.clone())
        .collect();
    let next = await_one_leader(&rest).await;
    let reply: Value = client.call("ledger", "work", json!({})).await.unwrap();
    assert_eq!(reply["instance"], rest[next].instance_id().as_str());
    assert!(reply["token"].as_u64().unwrap() > old_token, "{reply}");

    for service in rest {
        service.stop().await.unwrap();
    }
    let err = client
        .call::<_, Value>("ledger", "work", json!({}))
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
}

contract!(
    ;
    paused:
    lease_store_keeps_its_contract,
    renewed_lease_outlives_its_ttl,
    single_active_service_elects_one_leader_and_hands_over,
);
