//! A single-active service records its role (ACTIVE or STANDBY for its group) in the
//! service registry, and the record follows a failover.

use std::time::{Duration, Instant};

use aegis_sdk::application::discovery::Discovery;
use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::domain::instance::{InstanceStatus, ServiceInstance};
use aegis_sdk::{Client, ConnectOptions, FailoverPolicy, HandlerError, RpcContext, Service};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

fn node(instance: &str) -> Service {
    Service::builder("ledger-reg")
        .instance_id(instance)
        .with_registry(RegistryOptions::default())
        .single_active("default", FailoverPolicy::aggressive())
        .exclusive_rpc("whoami", |ctx: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!(ctx.instance_id().as_str()))
        })
        .build()
        .unwrap()
}

fn role(
    instances: &[ServiceInstance],
    id: &str,
) -> Option<(InstanceStatus, Option<String>, Option<String>)> {
    instances.iter().find(|i| i.instance_id == id).map(|i| {
        (
            i.status,
            i.sticky_active_group.clone(),
            i.sticky_active_status.clone(),
        )
    })
}

/// Waits until the registry shows `leader` ACTIVE and every other id STANDBY.
async fn wait_for_roles(
    discovery: &Discovery,
    leader: &str,
    standbys: &[&str],
) -> Vec<ServiceInstance> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let instances = discovery.instances("ledger-reg", false).await.unwrap();
        let leader_ok = role(&instances, leader)
            == Some((
                InstanceStatus::Active,
                Some("default".into()),
                Some("ACTIVE".into()),
            ));
        let standbys_ok = standbys.iter().all(|id| {
            role(&instances, id)
                == Some((
                    InstanceStatus::Standby,
                    Some("default".into()),
                    Some("STANDBY".into()),
                ))
        });
        if leader_ok && standbys_ok {
            return instances;
        }
        assert!(
            Instant::now() < deadline,
            "roles never settled: {instances:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_shows_the_leader_active_and_the_others_standby() {
    let server = NatsServer::start();
    let client = Client::connect(&ConnectOptions::new(server.url()))
        .await
        .unwrap();
    let nodes: Vec<Service> = ["reg-a", "reg-b"].iter().map(|id| node(id)).collect();
    for node in &nodes {
        node.start(&client).await.unwrap();
    }
    let leader: String = client
        .call("ledger-reg", "whoami", json!({}))
        .timeout(Duration::from_secs(10))
        .await
        .unwrap();
    let other = if leader == "reg-a" { "reg-b" } else { "reg-a" };
    let discovery = Discovery::open(&client).await.unwrap();
    wait_for_roles(&discovery, &leader, &[other]).await;

    // The leader leaves: the registry follows the handover.
    let leaving = nodes
        .iter()
        .find(|n| n.instance_id().as_str() == leader)
        .unwrap();
    leaving.stop().await.unwrap();
    let instances = wait_for_roles(&discovery, other, &[]).await;
    assert!(
        role(&instances, &leader).is_none(),
        "a stopped instance deregisters: {instances:?}"
    );
    for node in &nodes {
        node.stop().await.unwrap();
    }
}
