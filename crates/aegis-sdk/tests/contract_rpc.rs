//! One RPC contract, two adapters: every behaviour here runs against a real nats-server
//! and against the in-memory backend, so the two cannot drift apart.

#[macro_use]
mod backends;

use std::collections::HashMap;
use std::time::Duration;

use aegis_sdk::{ErrorKind, HandlerError, RpcContext, Service};
use backends::Backend;
use serde_json::{json, Value};

fn echo(instance: &str) -> Service {
    Service::builder("contract")
        .instance_id(instance)
        .rpc("echo", |ctx: RpcContext, p: Value| async move {
            Ok::<_, HandlerError>(
                json!({"echo": p["message"], "instance": ctx.instance_id().as_str()}),
            )
        })
        .rpc("fail", |_: RpcContext, _: Value| async move {
            Err::<Value, _>(HandlerError::invalid_request("bad input"))
        })
        .rpc("slow", |_: RpcContext, _: Value| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, HandlerError>(json!(null))
        })
        .build()
        .unwrap()
}

async fn load_balances_over_a_queue_group(backend: Backend) {
    let client = backend.client().await;
    let services: Vec<Service> = (0..3).map(|i| echo(&format!("c-{i}"))).collect();
    for service in &services {
        service.start(&backend.client().await).await.unwrap();
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..60 {
        let reply: Value = client
            .call("contract", "echo", json!({"message": i}))
            .await
            .unwrap();
        assert_eq!(reply["echo"], json!(i));
        *seen
            .entry(reply["instance"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 60);

    // Routed to one instance.
    let reply: Value = client
        .call("contract", "echo", json!({"message": "x"}))
        .instance("c-1")
        .await
        .unwrap();
    assert_eq!(reply["instance"], "c-1");
    for service in services {
        service.stop().await.unwrap();
    }
}

async fn errors_keep_their_kinds(backend: Backend) {
    let client = backend.client().await;
    let err = client
        .call::<_, Value>("contract", "echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);

    let service = echo("c-err");
    service.start(&backend.client().await).await.unwrap();
    let err = client
        .call::<_, Value>("contract", "fail", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(err.remote_code(), Some("INVALID_REQUEST"));

    let err = client
        .call::<_, Value>("contract", "slow", json!({}))
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);

    let err = client
        .call::<_, Value>("contract", "nope", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "unknown method: {err}");

    let err = client
        .call::<_, Value>("bad.name", "echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    service.stop().await.unwrap();

    let err = client
        .call::<_, Value>("contract", "echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "after stop: {err}");
}

contract!(load_balances_over_a_queue_group; paused: errors_keep_their_kinds);
