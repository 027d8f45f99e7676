//! One RPC contract, two adapters: every behaviour here runs against a real nats-server
//! and against the in-memory backend, so the two cannot drift apart.

#[macro_use]
mod backends;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_sdk::ports::Headers;
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
    assert!(
        err.message().contains("no reply from contract to slow"),
        "{err}"
    );
    let err = client
        .call::<_, Value>("contract", "slow", json!({}))
        .instance("c-err")
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("contract instance c-err"), "{err}");

    let err = client
        .call::<_, Value>("contract", "nope", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "unknown method: {err}");

    // Params travel as a map; anything else is refused before it is sent.
    for err in [
        client.call::<_, Value>("contract", "echo", ()).await,
        client
            .call::<_, Value>("contract", "echo", json!([1, 2]))
            .await,
        client.call::<_, Value>("contract", "echo", 42).await,
        client.call::<_, Value>("contract", "echo", "text").await,
    ] {
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.message().contains("map"), "{err}");
    }

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

async fn a_huge_timeout_means_no_limit(backend: Backend) {
    let client = backend.client().await;
    let service = echo("c-huge");
    service.start(&backend.client().await).await.unwrap();
    let reply: Value = client
        .call("contract", "echo", json!({"message": "max"}))
        .timeout(Duration::MAX)
        .await
        .unwrap();
    assert_eq!(reply["echo"], "max");
    let reply: Value = client
        .with_default_timeout(Duration::MAX)
        .call("contract", "echo", json!({"message": "default"}))
        .await
        .unwrap();
    assert_eq!(reply["echo"], "default");
    service.stop().await.unwrap();
}

async fn headers_that_cannot_go_on_the_wire_are_refused(backend: Backend) {
    let client = backend.client().await;
    let service = echo("c-headers");
    service.start(&backend.client().await).await.unwrap();
    for (name, value) in [
        ("bad name", "v"),
        ("a:b", "v"),
        ("", "v"),
        ("x-\u{fc}", "v"),
        ("x", "v\r\nInjected: 1"),
        ("x", "line\nbreak"),
    ] {
        let err = client
            .call::<_, Value>("contract", "echo", json!({"message": 1}))
            .header(name, value)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}: {err}");
        assert!(err.message().contains("header"), "{err}");

        let mut headers = Headers::new();
        headers.insert(name, value);
        let err = client
            .transport()
            .publish("contract.raw".into(), headers, "x".into())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}: {err}");
    }
    // The connection is fine, and a good header goes through.
    let reply: Value = client
        .call("contract", "echo", json!({"message": "ok"}))
        .header("X-Good", "a value: with colon")
        .await
        .unwrap();
    assert_eq!(reply["echo"], "ok");
    service.stop().await.unwrap();
}

/// A service at its concurrency limit: the first call holds the one slot until the test
/// lets it go; every start and the most running at once are counted.
struct Held {
    service: Service,
    started: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

fn held(instance: &str, hold: Option<Duration>, drain: Duration) -> Held {
    let started = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let service = Service::builder("held")
        .instance_id(instance)
        .max_concurrency(1)
        .drain_timeout(drain)
        .rpc("work", {
            let (started, running, peak, release) = (
                started.clone(),
                running.clone(),
                peak.clone(),
                release.clone(),
            );
            move |_: RpcContext, p: Value| {
                let (started, running, peak, release) = (
                    started.clone(),
                    running.clone(),
                    peak.clone(),
                    release.clone(),
                );
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    match hold {
                        Some(hold) => tokio::time::sleep(hold).await,
                        None => release.acquire().await.unwrap().forget(),
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, HandlerError>(p)
                }
            }
        })
        .build()
        .unwrap();
    Held {
        service,
        started,
        peak,
        release,
    }
}

async fn a_call_whose_caller_gave_up_while_it_waited_for_a_slot_never_runs(backend: Backend) {
    let client = backend.client().await;
    let held = held("c-held", None, Duration::from_secs(5));
    held.service.start(&backend.client().await).await.unwrap();

    let first = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, Value>("held", "work", json!({"n": 0}))
                .timeout(Duration::from_secs(10))
                .await
        }
    });
    while held.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two more wait behind the first, and their callers give up.
    let late = (1..=2).map(|n| {
        client
            .call::<_, Value>("held", "work", json!({ "n": n }))
            .timeout(Duration::from_millis(200))
            .into_future()
    });
    for result in futures::future::join_all(late).await {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
    }
    // Past the deadlines the service was given (they may trail the callers' by the
    // transit time), the slot frees up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.release.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), json!({"n": 0}));
    // The waiting calls are taken, found expired, and not run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.started.load(Ordering::SeqCst), 1);
    // The service goes on serving.
    held.release.add_permits(1);
    let reply: Value = client.call("held", "work", json!({"n": 3})).await.unwrap();
    assert_eq!(reply, json!({"n": 3}));
    assert_eq!(held.peak.load(Ordering::SeqCst), 1);
    held.service.stop().await.unwrap();
}

async fn stop_drains_within_the_concurrency_limit(backend: Backend) {
    let client = backend.client().await;
    let held = held(
        "c-drain",
        Some(Duration::from_millis(150)),
        Duration::from_secs(5),
    );
    held.service.start(&backend.client().await).await.unwrap();
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<_, Value>("held", "work", json!({ "n": n }))
                    .timeout(Duration::from_secs(5))
                    .await
            })
        })
        .collect();
    while held.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.service.stop().await.unwrap();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(held.started.load(Ordering::SeqCst), 4);
    assert_eq!(
        held.peak.load(Ordering::SeqCst),
        1,
        "the limit held while draining"
    );
}

async fn calls_the_drain_did_not_finish_are_told_so(backend: Backend) {
    let client = backend.client().await;
    let held = held(
        "c-cut",
        Some(Duration::from_millis(600)),
        Duration::from_millis(800),
    );
    held.service.start(&backend.client().await).await.unwrap();
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let result = client
                    .call::<_, Value>("held", "work", json!({ "n": n }))
                    .timeout(Duration::from_secs(10))
                    .await;
                (result, sent.elapsed())
            })
        })
        .collect();
    while held.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The first call ends at 600 ms, the second is cut at 900 ms (the drain's end), the
    // other two never start.
    held.service.stop().await.unwrap();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    assert_eq!(held.started.load(Ordering::SeqCst), 2);
    let unavailable = |(result, _): &&(aegis_sdk::Result<Value>, Duration)| matches!(result, Err(err) if err.remote_code() == Some("SERVICE_UNAVAILABLE"));
    assert_eq!(
        outcomes.iter().filter(|(r, _)| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    let refused: Vec<_> = outcomes.iter().filter(unavailable).collect();
    assert_eq!(refused.len(), 3, "{outcomes:?}");
    let cut = refused
        .iter()
        .filter(|(result, _)| {
            let err = result.as_ref().unwrap_err();
            err.message().contains("may have run in part")
        })
        .count();
    assert_eq!(cut, 1, "one was cut short, two never started: {outcomes:?}");
    for (_, elapsed) in refused {
        assert!(
            *elapsed < Duration::from_secs(5),
            "told at once, not at the timeout"
        );
    }
}

contract!(
    load_balances_over_a_queue_group,
    a_huge_timeout_means_no_limit,
    headers_that_cannot_go_on_the_wire_are_refused,
    a_call_whose_caller_gave_up_while_it_waited_for_a_slot_never_runs,
    stop_drains_within_the_concurrency_limit,
    calls_the_drain_did_not_finish_are_told_so;
    paused: errors_keep_their_kinds
);
