//! RPC end to end on a real nats-server started by each test.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_sdk::domain::envelope::RpcResponse;
use aegis_sdk::ports::Headers;
use aegis_sdk::{
    Client, ConnectOptions, Encoding, ErrorKind, HandlerError, RpcContext, Service, ServiceState,
};
use aegis_test_support::NatsServer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

async fn connect(server: &NatsServer) -> Client {
    Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Echo {
    message: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct EchoReply {
    echo: String,
    instance: String,
}

fn echo_service(instance: &str) -> Service {
    Service::builder("echo-service")
        .instance_id(instance)
        .rpc("echo", |ctx: RpcContext, p: Echo| async move {
            Ok::<_, HandlerError>(EchoReply {
                echo: p.message,
                instance: ctx.instance_id().to_string(),
            })
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_300_calls() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let mut services = Vec::new();
    for i in 0..3 {
        let service = echo_service(&format!("echo-{i}"));
        service.start(&connect(&server).await).await.unwrap();
        services.push(service);
    }

    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for i in 0..300 {
        let reply: EchoReply = client
            .call(
                "echo-service",
                "echo",
                Echo {
                    message: format!("m{i}"),
                },
            )
            .await
            .unwrap();
        assert_eq!(reply.echo, format!("m{i}"));
        *per_instance.entry(reply.instance).or_default() += 1;
    }
    assert_eq!(per_instance.values().sum::<usize>(), 300);
    assert_eq!(
        per_instance.len(),
        3,
        "every instance serves some: {per_instance:?}"
    );

    for service in services {
        service.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_times_out_after_the_deadline_not_before() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let service = Service::builder("slow")
        .rpc("wait", |_: RpcContext, _: Value| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, HandlerError>(json!("late"))
        })
        .build()
        .unwrap();
    service.start(&client).await.unwrap();

    let started = Instant::now();
    let err = client
        .call::<_, Value>("slow", "wait", json!({}))
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        elapsed >= Duration::from_secs(1),
        "timed out early: {elapsed:?}"
    );
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_handler_is_no_responders_at_once() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let started = Instant::now();
    let err = client
        .call::<_, Value>("nobody", "home", json!({}))
        .timeout(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no responders took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_panicking_handlers_reply_with_failures_and_keep_serving() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let service = Service::builder("faulty")
        .rpc("fail", |_: RpcContext, _: Value| async move {
            Err::<Value, _>(HandlerError::msg("out of stock"))
        })
        .rpc("panic", |_: RpcContext, _: Value| async move {
            if true {
                panic!("handler exploded");
            }
            Ok::<Value, HandlerError>(json!(null))
        })
        .rpc("ok", |_: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!(1))
        })
        .build()
        .unwrap();
    service.start(&client).await.unwrap();

    let err = client
        .call::<_, Value>("faulty", "fail", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(err.message(), "out of stock");

    // The raw reply correlates to the request's message id.
    let request = aegis_sdk::domain::envelope::RpcRequest::new("fail", json!({}));
    let bytes = Encoding::MessagePack.encode(&request).unwrap();
    let reply = client
        .transport()
        .request(
            "rpc.faulty.fail".into(),
            Headers::new(),
            bytes.into(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    let response = RpcResponse::<Value>::decode(&reply.payload).unwrap();
    assert!(!response.success);
    assert_eq!(
        response.correlation_id.as_deref(),
        Some(request.message_id.as_str())
    );
    assert_eq!(response.error.as_deref(), Some("out of stock"));

    let err = client
        .call::<_, Value>("faulty", "panic", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(err.remote_code(), Some("INTERNAL_ERROR"));
    assert!(err.message().contains("handler exploded"), "{err}");

    let ok: Value = client.call("faulty", "ok", json!({})).await.unwrap();
    assert_eq!(ok, json!(1));
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_and_json_interoperate_both_ways() {
    let server = NatsServer::start();
    let base = connect(&server).await;
    for (service_encoding, client_encoding) in [
        (Encoding::Json, Encoding::MessagePack),
        (Encoding::MessagePack, Encoding::Json),
    ] {
        let service = Service::builder("mixed")
            .encoding(service_encoding)
            .rpc("echo", |_: RpcContext, p: Echo| async move {
                Ok::<_, HandlerError>(json!({"echo": p.message}))
            })
            .build()
            .unwrap();
        service.start(&base).await.unwrap();

        let client = base.with_encoding(client_encoding);
        let reply: Value = client
            .call(
                "mixed",
                "echo",
                Echo {
                    message: "x".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(reply, json!({"echo": "x"}));

        // The reply really is in the service's encoding.
        let request = aegis_sdk::domain::envelope::RpcRequest::new("echo", json!({"message": "y"}));
        let bytes = client_encoding.encode(&request).unwrap();
        let raw = base
            .transport()
            .request(
                "rpc.mixed.echo".into(),
                Headers::new(),
                bytes.into(),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(Encoding::sniff(&raw.payload), Some(service_encoding));
        service.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_are_matched_to_their_requests() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let service = echo_service("echo-a");
    service.start(&client).await.unwrap();
    let other = echo_service("echo-b");
    other.start(&connect(&server).await).await.unwrap();

    let calls = (0..1000).map(|i| {
        let client = client.clone();
        tokio::spawn(async move {
            let reply: EchoReply = client
                .call(
                    "echo-service",
                    "echo",
                    Echo {
                        message: format!("call-{i}"),
                    },
                )
                .timeout(Duration::from_secs(20))
                .await
                .unwrap();
            (i, reply.echo)
        })
    });
    let results = futures::future::join_all(calls).await;
    let mut seen = HashSet::new();
    for result in results {
        let (i, echo) = result.unwrap();
        assert_eq!(echo, format!("call-{i}"));
        assert!(seen.insert(i));
    }
    assert_eq!(seen.len(), 1000);
    service.stop().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_failure_replies_and_the_service_keeps_serving() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let service = echo_service("echo-bad");
    service.start(&client).await.unwrap();
    let transport = client.transport().clone();

    let msgpack = |v: Value| Encoding::MessagePack.encode(&v).unwrap();
    let json_bytes = |v: Value| serde_json::to_vec(&v).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"\xc1\xff\x00garbage".to_vec(), "MessagePack"),
        ("empty", Vec::new(), "empty payload"),
        ("not json", b"hello there".to_vec(), "JSON"),
        (
            "json missing method",
            json_bytes(json!({"params": {"message": "x"}})),
            "method",
        ),
        (
            "msgpack missing method",
            msgpack(json!({"params": {"message": "x"}})),
            "method",
        ),
        (
            "json wrong timeout",
            json_bytes(json!({"method": "echo", "params": {"message": "x"}, "timeout": "soon"})),
            "timeout",
        ),
        (
            "msgpack wrong params",
            msgpack(json!({"method": "echo", "params": {"message": 5}})),
            "message",
        ),
        (
            "msgpack params not map",
            msgpack(json!({"method": "echo", "params": [1]})),
            "params",
        ),
        // A struct's fields in an array: serde would take it, the contract does not.
        (
            "msgpack typed params as an array",
            msgpack(json!({"method": "echo", "params": ["x"]})),
            "`params` must be a map",
        ),
        (
            "json typed params as an array",
            json_bytes(json!({"method": "echo", "params": ["x"]})),
            "`params` must be a map",
        ),
        (
            "json negative timeout",
            json_bytes(json!({"method": "echo", "params": {"message": "x"}, "timeout": -1})),
            "timeout",
        ),
    ];
    for (name, bytes, mentions) in cases {
        let reply = transport
            .request(
                "rpc.echo-service.echo".into(),
                Headers::new(),
                bytes.into(),
                Duration::from_secs(2),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: no reply: {e}"));
        let response = RpcResponse::<Value>::decode(&reply.payload)
            .unwrap_or_else(|e| panic!("{name}: undecodable reply: {e}"));
        assert!(!response.success, "{name}");
        let error = response.error.unwrap();
        assert!(error.starts_with("INVALID_REQUEST"), "{name}: {error}");
        assert!(
            error.contains(mentions),
            "{name}: {error:?} should mention {mentions:?}"
        );
    }

    // Still serving.
    let reply: EchoReply = client
        .call(
            "echo-service",
            "echo",
            Echo {
                message: "still here".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.echo, "still here");
    assert_eq!(service.state(), ServiceState::Started);
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused_locally() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    // A responder on a wildcard would see anything that reached the wire.
    let mut spy = client
        .transport()
        .subscribe(">".into(), None)
        .await
        .unwrap();
    client.transport().flush().await.unwrap();

    for bad in ["", "a.b", "a b", "a*", "a>", "a\nb"] {
        let err = client
            .call::<_, Value>(bad, "echo", json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "service {bad:?}");
        let err = client
            .call::<_, Value>("echo-service", bad, json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "method {bad:?}");
        let err = Service::builder(bad).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        let err = Service::builder("ok")
            .rpc(bad, |_: RpcContext, _: Value| async {
                Ok::<_, HandlerError>(())
            })
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
    }
    let err = client
        .call::<_, Value>("echo-service", "echo", json!({}))
        .instance("bad.instance")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);

    // Nothing was published (flush's own round trip goes to an inbox; skip those).
    client.transport().flush().await.unwrap();
    let leaked = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            match futures::StreamExt::next(&mut spy).await {
                Some(message) if message.subject.starts_with("_INBOX.") => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(leaked.is_err(), "a message reached the wire: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payload_fails_locally_and_the_connection_stays_up() {
    let server = NatsServer::builder().max_payload(64 * 1024).start();
    let client = connect(&server).await;
    let service = echo_service("echo-big");
    service.start(&client).await.unwrap();

    let big = "x".repeat(100 * 1024);
    let err = client
        .call::<_, EchoReply>("echo-service", "echo", Echo { message: big })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");

    let reply: EchoReply = client
        .call(
            "echo-service",
            "echo",
            Echo {
                message: "small".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.echo, "small");
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_too_large_to_send_is_a_failure_not_a_timeout() {
    let server = NatsServer::builder().max_payload(64 * 1024).start();
    let client = connect(&server).await;
    let service = Service::builder("big")
        .rpc("blob", |_: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>("y".repeat(100 * 1024))
        })
        .build()
        .unwrap();
    service.start(&client).await.unwrap();
    let err = client
        .call::<_, String>("big", "blob", json!({}))
        .timeout(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert_eq!(err.remote_code(), Some("INTERNAL_ERROR"));
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_recover_after_a_server_restart_without_restarting_the_service() {
    let mut server = NatsServer::start();
    let client = connect(&server).await;
    let service = echo_service("echo-restart");
    service.start(&connect(&server).await).await.unwrap();
    let mut events = client.connection_events();

    let ok: EchoReply = client
        .call(
            "echo-service",
            "echo",
            Echo {
                message: "before".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.echo, "before");

    server.stop();
    let err = client
        .call::<_, EchoReply>(
            "echo-service",
            "echo",
            Echo {
                message: "down".into(),
            },
        )
        .timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");

    // The program is told about the outage.
    let saw_disconnect = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(aegis_sdk::ports::ConnectionEvent::Disconnected) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(saw_disconnect, Ok(true));
    // A call while the connection is down times out, and says why.
    let err = client
        .call::<_, EchoReply>(
            "echo-service",
            "echo",
            Echo {
                message: "still down".into(),
            },
        )
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), aegis_sdk::ErrorKind::Timeout, "{err}");
    assert!(
        err.message().contains("connection to NATS is down"),
        "{err}"
    );

    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match client
            .call::<_, EchoReply>(
                "echo-service",
                "echo",
                Echo {
                    message: "after".into(),
                },
            )
            .timeout(Duration::from_millis(500))
            .await
        {
            Ok(reply) => break reply,
            Err(e) if Instant::now() < deadline && e.is_transient() => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    };
    assert_eq!(reply.echo, "after");
    assert_eq!(
        client.connection_state(),
        aegis_sdk::ports::ConnectionState::Connected
    );
    assert_eq!(service.state(), ServiceState::Started);
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_a_slow_call_finish_then_the_service_is_gone() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = Arc::new(Mutex::new(Some(entered_tx)));
    let stopped_hook = Arc::new(AtomicUsize::new(0));
    let hook_count = stopped_hook.clone();
    let service = Service::builder("slow-stop")
        .rpc("work", move |_: RpcContext, _: Value| {
            let entered = entered_tx.lock().unwrap().take();
            async move {
                if let Some(tx) = entered {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(800)).await;
                Ok::<_, HandlerError>(json!("done"))
            }
        })
        .on_stop(move || {
            let count = hook_count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .build()
        .unwrap();
    service.start(&connect(&server).await).await.unwrap();
    let mut states = service.watch_state();

    let call = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call::<_, Value>("slow-stop", "work", json!({}))
                .timeout(Duration::from_secs(5))
                .await
        })
    };
    entered_rx.await.unwrap();
    service.stop().await.unwrap();

    // The in-flight call was answered although stop came while it ran.
    let result = call.await.unwrap().unwrap();
    assert_eq!(result, json!("done"));
    assert_eq!(service.state(), ServiceState::Stopped);
    assert_eq!(*states.borrow_and_update(), ServiceState::Stopped);
    assert_eq!(stopped_hook.load(Ordering::SeqCst), 1);

    let err = client
        .call::<_, Value>("slow-stop", "work", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_run_concurrently_up_to_the_limit() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let service = Service::builder("limited")
        .max_concurrency(3)
        .rpc("work", move |_: RpcContext, _: Value| {
            let (running, peak) = (r.clone(), p.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(150)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(json!(null))
            }
        })
        .rpc("fast", |_: RpcContext, _: Value| async {
            Ok::<_, HandlerError>(json!("fast"))
        })
        .build()
        .unwrap();
    service.start(&client).await.unwrap();

    let calls: Vec<_> = (0..9)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<_, Value>("limited", "work", json!({}))
                    .timeout(Duration::from_secs(10))
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "more than one at a time, never over 3"
    );

    // A slow call does not block a fast one.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call::<_, Value>("limited", "work", json!({}))
                .timeout(Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fast: Value = client.call("limited", "fast", json!({})).await.unwrap();
    assert_eq!(fast, json!("fast"));
    assert!(!slow.is_finished(), "the fast call waited for the slow one");
    slow.await.unwrap().unwrap();
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_can_target_one_instance() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let a = echo_service("echo-one");
    let b = echo_service("echo-two");
    a.start(&client).await.unwrap();
    b.start(&client).await.unwrap();
    for _ in 0..20 {
        let reply: EchoReply = client
            .call(
                "echo-service",
                "echo",
                Echo {
                    message: "x".into(),
                },
            )
            .instance("echo-two")
            .await
            .unwrap();
        assert_eq!(reply.instance, "echo-two");
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_states_and_failing_start_hook() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let service = echo_service("echo-life");
    assert_eq!(service.state(), ServiceState::Initializing);
    service.start(&client).await.unwrap();
    assert_eq!(service.state(), ServiceState::Started);
    let again = service.start(&client).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::InvalidArgument);
    service.stop().await.unwrap();
    assert_eq!(service.state(), ServiceState::Stopped);
    // Stopping twice is harmless.
    service.stop().await.unwrap();

    let failing = Service::builder("hooked")
        .rpc("m", |_: RpcContext, _: Value| async {
            Ok::<_, HandlerError>(())
        })
        .on_start(|| async { Err(HandlerError::msg("database unreachable")) })
        .build()
        .unwrap();
    let err = failing.start(&client).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("database unreachable"));
    assert_eq!(failing.state(), ServiceState::Failed);
    // Nothing of it keeps serving.
    let err = client
        .call::<_, Value>("hooked", "m", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);
}

#[tokio::test]
async fn a_new_trace_travels_in_the_envelope_and_nested_calls_carry_the_header() {
    // No tracing subscriber in this test binary: the handler's span is disabled, and a
    // request without a `traceparent` header has its trace adopted from the envelope
    // when the handler decodes it.
    use aegis_sdk::application::propagation::current;
    use aegis_sdk::domain::trace::{TraceContext, TRACEPARENT};

    let server = NatsServer::start();
    let client = connect(&server).await;
    // What each handler saw: its envelope trace id, the header's trace, its current trace.
    type Seen = (String, Option<String>, Option<String>);
    let seen: Arc<Mutex<Vec<(&'static str, Seen)>>> = Arc::default();
    let record = |seen: &Arc<Mutex<Vec<(&'static str, Seen)>>>, hop, ctx: &RpcContext| {
        let header = ctx
            .headers()
            .get(TRACEPARENT)
            .and_then(TraceContext::parse_traceparent)
            .map(|t| t.envelope_trace_id());
        let current = current().map(|t| t.envelope_trace_id());
        seen.lock()
            .unwrap()
            .push((hop, (ctx.trace_id().to_owned(), header, current)));
    };
    let service = Service::builder("trace-lazy")
        .rpc("outer", {
            let seen = seen.clone();
            move |ctx: RpcContext, _: Value| {
                let seen = seen.clone();
                async move {
                    record(&seen, "outer", &ctx);
                    let _: Value = ctx.client().call("trace-lazy", "inner", json!({})).await?;
                    Ok::<_, HandlerError>(json!({}))
                }
            }
        })
        .rpc("inner", {
            let seen = seen.clone();
            move |ctx: RpcContext, _: Value| {
                let seen = seen.clone();
                async move {
                    record(&seen, "inner", &ctx);
                    Ok::<_, HandlerError>(json!({}))
                }
            }
        })
        .build()
        .unwrap();
    service.start(&client).await.unwrap();

    let _: Value = client.call("trace-lazy", "outer", json!({})).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (outer, inner) = (&seen[0], &seen[1]);
    assert_eq!((outer.0, inner.0), ("outer", "inner"));
    let trace = outer.1 .0.clone();
    assert!(TraceContext::from_envelope_trace_id(&trace).is_some());
    // The top-level call started the trace: no header, the envelope names it, and the
    // handler runs in it.
    assert_eq!(outer.1 .1, None);
    assert_eq!(outer.1 .2.as_deref(), Some(trace.as_str()));
    // The nested call continues it, in the envelope and in the header.
    assert_eq!(inner.1 .0, trace);
    assert_eq!(inner.1 .1.as_deref(), Some(trace.as_str()));
    assert_eq!(inner.1 .2.as_deref(), Some(trace.as_str()));
    service.stop().await.unwrap();
}
