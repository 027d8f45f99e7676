//! One commands contract, two adapters: senders and workers run against a real
//! nats-server and in memory, so the two cannot drift apart. Queues and dead letters are
//! inspected through the ports, the same way on both.

#[macro_use]
mod backends;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::application::commands::WorkerOptions;
use aegis_sdk::ports::events::{ConsumerSpec, Delivery, Retention, Settle, StartAt, StreamSpec};
use aegis_sdk::ports::Headers;
use aegis_sdk::{
    Client, CommandContext, CommandState, CommandStatus, ErrorKind, HandlerError, Priority, Service,
};
use backends::Backend;
use futures::StreamExt;
use serde_json::{json, Value};

/// Long enough for any step of these tests on a busy machine; only hit when broken.
const PATIENCE: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

fn fast_options() -> WorkerOptions {
    WorkerOptions::default()
        .retry_backoff(Duration::from_millis(50))
        .pull_expires(Duration::from_millis(300))
        .cancel_grace(Duration::from_millis(500))
}

/// The record of `id` once it reached `state`; the worker writes it right after the
/// sender hears the outcome, so a lookup may trail by one write.
async fn final_status(client: &Client, id: &str, state: CommandState) -> CommandStatus {
    within("the final record", async {
        loop {
            let status = client.command_status(id).await.unwrap();
            if status.state == state {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The first dead letter on `subject`, read through the event bus port.
async fn dead_letter(client: &Client, subject: &str) -> Delivery {
    let bus = client.backend().expect("a backend").event_bus(None);
    let mut letters = within("the dead-letter stream", async {
        loop {
            let consumed = bus
                .consume(ConsumerSpec {
                    stream: "COMMANDS_DLQ".to_owned(),
                    name: format!("reader_{}", uuid::Uuid::new_v4().simple()),
                    filter_subject: subject.to_owned(),
                    start: StartAt::First,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 10,
                    inactive_threshold: Some(Duration::from_secs(5)),
                    prefetch: 1,
                    description: "contract test".to_owned(),
                })
                .await;
            match consumed {
                Ok(letters) => return letters,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let letter = within("a dead letter", letters.next()).await.unwrap();
    letter.acker.settle(Settle::Ack).await.unwrap();
    letter
}

async fn progress_arrives_in_order_then_the_result(backend: Backend) {
    let service = Service::builder("batch")
        .on_command("process", |ctx: CommandContext, p: Value| async move {
            let items = p["items"].as_u64().unwrap_or(0);
            for step in 0..=4u32 {
                ctx.progress(f64::from(step) * 25.0, format!("step {step}"))
                    .await?;
            }
            Ok::<_, HandlerError>(json!({"processed": items}))
        })
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();

    let client = backend.client().await;
    let mut handle = client
        .send_command("batch", "process", json!({"items": 7}))
        .await
        .unwrap();
    let id = handle.id().to_owned();
    let progress: Vec<_> = within("progress", handle.progress().collect::<Vec<_>>()).await;
    let percents: Vec<f64> = progress.iter().map(|p| p.percent).collect();
    assert_eq!(percents, vec![0.0, 25.0, 50.0, 75.0, 100.0]);
    assert_eq!(progress[4].message, "step 4");
    let result: Value = within("result", handle.result()).await.unwrap();
    assert_eq!(result, json!({"processed": 7}));

    // The record is readable by id from another connection.
    let other = backend.client().await;
    let status = final_status(&other, &id, CommandState::Succeeded).await;
    assert_eq!(status.result, Some(json!({"processed": 7})));
    assert_eq!(status.progress.map(|p| p.percent), Some(100.0));
    assert_eq!(
        other
            .command_status(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        other.command_status("not.an.id").await.unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    service.stop().await.unwrap();
}

async fn two_workers_share_the_queue_and_run_each_command_once(backend: Backend) {
    let runs: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let per_worker: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut services = Vec::new();
    for i in 0..2 {
        let runs = runs.clone();
        let per_worker = per_worker.clone();
        let service = Service::builder("shared")
            .instance_id(format!("shared-{i}"))
            .on_command_with(
                "work",
                fast_options().concurrency(4).lookahead(4),
                move |ctx: CommandContext, p: Value| {
                    let runs = runs.clone();
                    let per_worker = per_worker.clone();
                    async move {
                        let n = p["n"].as_u64().unwrap();
                        *runs.lock().unwrap().entry(n).or_default() += 1;
                        *per_worker
                            .lock()
                            .unwrap()
                            .entry(ctx.instance_id().to_string())
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok::<_, HandlerError>(json!({"n": n}))
                    }
                },
            )
            .build()
            .unwrap();
        service.start(&backend.client().await).await.unwrap();
        services.push(service);
    }

    let client = backend.client().await;
    let mut handles = Vec::new();
    for n in 0..100u64 {
        handles.push(
            client
                .send_command("shared", "work", json!({"n": n}))
                .await
                .unwrap(),
        );
    }
    for (n, handle) in handles.into_iter().enumerate() {
        let result: Value = within("result", handle.result()).await.unwrap();
        assert_eq!(result["n"], n as u64);
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 100);
    assert!(runs.values().all(|&c| c == 1), "some ran twice: {runs:?}");
    let per_worker = per_worker.lock().unwrap().clone();
    assert_eq!(per_worker.len(), 2, "both workers busy: {per_worker:?}");
    for service in services {
        service.stop().await.unwrap();
    }

    // A work queue: each command left the queue once it was done.
    let bus = client.backend().unwrap().event_bus(None);
    let queue = bus.stream("COMMANDS").await.unwrap();
    assert_eq!(queue.retention, Retention::WorkQueue);
    assert_eq!(queue.messages, 0);
}

async fn a_backlog_runs_in_priority_order(backend: Backend) {
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let service = Service::builder("ranked")
        .on_command_with(
            "job",
            fast_options()
                .concurrency(1)
                .lookahead(32)
                .priority_aging(Duration::from_secs(600)),
            {
                let (order, gate, started) = (order.clone(), gate.clone(), started.clone());
                move |_: CommandContext, p: Value| {
                    let (order, gate, started) = (order.clone(), gate.clone(), started.clone());
                    async move {
                        let name = p["name"].as_str().unwrap().to_owned();
                        if name == "blocker" {
                            // Holds the only slot until the backlog has arrived.
                            started.store(true, Ordering::SeqCst);
                            let _ = gate.acquire().await;
                        } else {
                            order.lock().unwrap().push(name);
                        }
                        Ok::<_, HandlerError>(json!(null))
                    }
                }
            },
        )
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();

    let client = backend.client().await;
    let blocker = client
        .send_command("ranked", "job", json!({"name": "blocker"}))
        .await
        .unwrap();
    within("the blocker", async {
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut handles = Vec::new();
    for round in 0..3 {
        for priority in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ] {
            handles.push(
                client
                    .send_command(
                        "ranked",
                        "job",
                        json!({"name": format!("{priority}-{round}")}),
                    )
                    .priority(priority)
                    .await
                    .unwrap(),
            );
        }
    }
    // Time for the worker to pull the backlog into its waiting room (several pulls
    // of 300 ms each).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gate.add_permits(1);

    within("blocker", blocker.result::<Value>()).await.unwrap();
    for handle in handles {
        within("job", handle.result::<Value>()).await.unwrap();
    }
    let expected: Vec<String> = Priority::ALL_DESCENDING
        .iter()
        .flat_map(|p| (0..3).map(move |round| format!("{p}-{round}")))
        .collect();
    assert_eq!(*order.lock().unwrap(), expected);
    service.stop().await.unwrap();
}

async fn failures_are_retried_then_dead_lettered(backend: Backend) {
    let flaky_runs = Arc::new(AtomicUsize::new(0));
    let broken_runs = Arc::new(AtomicUsize::new(0));
    let service = Service::builder("retrying")
        .on_command_with("flaky", fast_options(), {
            let runs = flaky_runs.clone();
            move |ctx: CommandContext, _: Value| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move {
                    if ctx.attempt() <= 2 {
                        return Err(HandlerError::msg(format!(
                            "flaky attempt {}",
                            ctx.attempt()
                        )));
                    }
                    Ok(json!({"attempt": ctx.attempt()}))
                }
            }
        })
        .on_command_with("broken", fast_options(), {
            let runs = broken_runs.clone();
            move |_: CommandContext, _: Value| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move { Err::<Value, _>(HandlerError::msg("disk on fire")) }
            }
        })
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();
    let client = backend.client().await;

    let result: Value = within(
        "flaky",
        client
            .send_command("retrying", "flaky", json!({}))
            .max_retries(3)
            .await
            .unwrap()
            .result(),
    )
    .await
    .unwrap();
    assert_eq!(result, json!({"attempt": 3}));
    assert_eq!(flaky_runs.load(Ordering::SeqCst), 3);

    let handle = client
        .send_command("retrying", "broken", json!({}))
        .max_retries(2)
        .await
        .unwrap();
    let id = handle.id().to_owned();
    let err = within("broken", handle.result::<Value>())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert_eq!(err.message(), "disk on fire");
    assert_eq!(broken_runs.load(Ordering::SeqCst), 3, "1 run + 2 retries");
    let status = final_status(&client, &id, CommandState::Failed).await;
    assert_eq!(status.attempt, 3);

    let letter = dead_letter(&client, "dlq.commands.retrying.broken").await;
    assert_eq!(letter.headers.get("Aegis-Command-Id"), Some(id.as_str()));
    assert_eq!(letter.headers.get("Aegis-Dlq-Reason"), Some("disk on fire"));
    service.stop().await.unwrap();
}

async fn a_command_past_its_timeout_is_cancelled(backend: Backend) {
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let service = Service::builder("slow")
        .on_command_with("sleep", fast_options(), {
            let saw_cancel = saw_cancel.clone();
            move |ctx: CommandContext, _: Value| {
                let saw_cancel = saw_cancel.clone();
                async move {
                    tokio::select! {
                        _ = ctx.cancelled() => saw_cancel.store(true, Ordering::SeqCst),
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    Ok::<_, HandlerError>(json!("finished"))
                }
            }
        })
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();
    let client = backend.client().await;

    let handle = client
        .send_command("slow", "sleep", json!({}))
        .timeout(Duration::from_millis(300))
        .await
        .unwrap();
    let id = handle.id().to_owned();
    let err = within("timeout", handle.result::<Value>())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        saw_cancel.load(Ordering::SeqCst),
        "the handler saw the cancel"
    );
    final_status(&client, &id, CommandState::TimedOut).await;
    service.stop().await.unwrap();
}

async fn cancel_stops_a_running_handler_and_a_queued_command(backend: Backend) {
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let client = backend.client().await;

    // Queued, no worker yet: cancelled before it ever runs.
    let queued = client
        .send_command("cancellable", "run", json!({"wait": true}))
        .await
        .unwrap();
    queued.cancel().await.unwrap();
    let queued_id = queued.id().to_owned();
    let err = within("queued cancel", queued.result::<Value>())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");

    let service = Service::builder("cancellable")
        .on_command_with("run", fast_options(), {
            let saw_cancel = saw_cancel.clone();
            let runs = runs.clone();
            move |ctx: CommandContext, _: Value| {
                let saw_cancel = saw_cancel.clone();
                runs.fetch_add(1, Ordering::SeqCst);
                async move {
                    ctx.progress(0.0, "waiting to be cancelled").await?;
                    ctx.cancelled().await;
                    saw_cancel.store(true, Ordering::SeqCst);
                    Ok::<_, HandlerError>(json!("stopped"))
                }
            }
        })
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();

    let mut running = client
        .send_command("cancellable", "run", json!({}))
        .await
        .unwrap();
    let first = within("first progress", running.next_progress()).await;
    assert_eq!(first.map(|p| p.percent), Some(0.0));
    running.cancel().await.unwrap();
    let err = within("running cancel", running.result::<Value>())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    // The handler itself is told; on a busy machine the sender may hear the outcome
    // before the handler's code after `cancelled()` has run.
    within("the handler seeing the cancel", async {
        while !saw_cancel.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // The queued one reached the worker too, and was skipped: only one run.
    final_status(&client, &queued_id, CommandState::Cancelled).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    service.stop().await.unwrap();
}

async fn the_same_command_id_runs_once(backend: Backend) {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = Service::builder("idempotent")
        .on_command_with("charge", fast_options(), {
            let runs = runs.clone();
            move |_: CommandContext, p: Value| {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, HandlerError>(json!({"amount": p["amount"], "run": run}))
                }
            }
        })
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();

    let id = uuid::Uuid::new_v4().to_string();
    let first_client = backend.client().await;
    let second_client = backend.client().await;
    let (first, second) = tokio::join!(
        first_client
            .send_command("idempotent", "charge", json!({"amount": 5}))
            .id(&id),
        second_client
            .send_command("idempotent", "charge", json!({"amount": 5}))
            .id(&id),
    );
    let first: Value = within("first", first.unwrap().result()).await.unwrap();
    let second: Value = within("second", second.unwrap().result()).await.unwrap();
    assert_eq!(first, json!({"amount": 5, "run": 1}));
    assert_eq!(second, first);

    // Later again, after it finished: the recorded outcome, no new run.
    let third: Value = within(
        "third",
        first_client
            .send_command("idempotent", "charge", json!({"amount": 5}))
            .id(&id)
            .await
            .unwrap()
            .result(),
    )
    .await
    .unwrap();
    assert_eq!(third, first);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    service.stop().await.unwrap();
}

async fn an_undecodable_command_is_dead_lettered_and_the_worker_goes_on(backend: Backend) {
    let service = Service::builder("strict")
        .on_command_with(
            "run",
            fast_options(),
            |_: CommandContext, _: Value| async move { Ok::<_, HandlerError>(json!("ok")) },
        )
        .build()
        .unwrap();
    let client = backend.client().await;
    service.start(&client).await.unwrap();

    client
        .backend()
        .unwrap()
        .command_queue()
        .enqueue(
            "commands.strict.run".to_owned(),
            &uuid::Uuid::new_v4().to_string(),
            Headers::new(),
            "not an envelope".into(),
        )
        .await
        .unwrap();
    let result: Value = within(
        "valid command",
        client
            .send_command("strict", "run", json!({}))
            .await
            .unwrap()
            .result(),
    )
    .await
    .unwrap();
    assert_eq!(result, json!("ok"));

    let letter = dead_letter(&client, "dlq.commands.strict.run").await;
    assert_eq!(&letter.payload[..], b"not an envelope");
    let reason = letter.headers.get("Aegis-Dlq-Reason").unwrap();
    assert!(reason.starts_with("INVALID_REQUEST"), "{reason}");
    service.stop().await.unwrap();
}

async fn an_existing_commands_stream_that_is_not_a_work_queue_is_an_error(backend: Backend) {
    let client = backend.client().await;
    client
        .backend()
        .unwrap()
        .event_bus(None)
        .create_stream(&StreamSpec {
            name: "COMMANDS".into(),
            subjects: vec!["commands.>".into()],
            max_messages: None,
            max_bytes: None,
            max_age: None,
            replicas: 1,
            storage: Default::default(),
            duplicate_window: Duration::from_secs(120),
        })
        .await
        .unwrap();

    let service = Service::builder("misconfigured")
        .on_command("run", |_: CommandContext, _: Value| async move {
            Ok::<_, HandlerError>(json!(null))
        })
        .build()
        .unwrap();
    let err = service.start(&backend.client().await).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(err.message().contains("work-queue"), "{err}");

    let err = client
        .send_command("misconfigured", "run", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
}

async fn bad_input_is_refused_before_the_wire(backend: Backend) {
    let client = backend.client().await;
    let cases = [
        ("bad.service", "run", json!({}), ErrorKind::InvalidName),
        ("svc", "bad cmd", json!({}), ErrorKind::InvalidName),
        ("svc", "run", json!([1, 2]), ErrorKind::InvalidArgument),
    ];
    for (service, command, payload, kind) in cases {
        let err = client
            .send_command(service, command, payload)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{service} {command}: {err}");
    }
    let err = client
        .send_command("svc", "run", json!({}))
        .id("a.b")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    let err = client
        .send_command("svc", "run", json!({}))
        .timeout(Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = Service::builder("svc")
        .on_command("no.dots", |_: CommandContext, _: Value| async move {
            Ok::<_, HandlerError>(json!(null))
        })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
}

async fn another_client_attaches_to_and_cancels_a_command_by_id(backend: Backend) {
    let release = Arc::new(tokio::sync::Notify::new());
    let service = Service::builder("reports")
        .on_command_with("build", fast_options(), {
            let release = release.clone();
            move |ctx: CommandContext, _: Value| {
                let release = release.clone();
                async move {
                    ctx.progress(10.0, "started").await?;
                    tokio::select! {
                        _ = release.notified() => {}
                        _ = ctx.cancelled() => return Err(HandlerError::msg("cancelled")),
                    }
                    ctx.progress(100.0, "done").await?;
                    Ok::<_, HandlerError>(json!({"pages": 3}))
                }
            }
        })
        .build()
        .unwrap();
    service.start(&backend.client().await).await.unwrap();

    // Sent by one client, followed by another that knows only the id.
    let sender = backend.client().await;
    let mut sent = sender
        .send_command("reports", "build", json!({}))
        .await
        .unwrap();
    assert_eq!(
        within("first progress", sent.next_progress())
            .await
            .map(|p| p.percent),
        Some(10.0)
    );
    let watcher = backend.client().await;
    let attached = watcher.attach_command(sent.id()).await.unwrap();
    assert_eq!(
        watcher.command_status(sent.id()).await.unwrap().state,
        CommandState::Running
    );
    release.notify_one();
    let result: Value = within("attached result", attached.result()).await.unwrap();
    assert_eq!(result, json!({"pages": 3}));
    let result: Value = within("sender result", sent.result()).await.unwrap();
    assert_eq!(result, json!({"pages": 3}));
    let err = watcher
        .attach_command(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Cancelled by id from a third client while it runs.
    let mut second = sender
        .send_command("reports", "build", json!({}))
        .await
        .unwrap();
    within("progress", second.next_progress()).await;
    let second_id = second.id().to_owned();
    backend
        .client()
        .await
        .cancel_command(&second_id)
        .await
        .unwrap();
    let err = within("cancelled", second.result::<Value>())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    final_status(&sender, &second_id, CommandState::Cancelled).await;
    service.stop().await.unwrap();
}

contract!(
    progress_arrives_in_order_then_the_result,
    two_workers_share_the_queue_and_run_each_command_once,
    the_same_command_id_runs_once,
    an_undecodable_command_is_dead_lettered_and_the_worker_goes_on,
    an_existing_commands_stream_that_is_not_a_work_queue_is_an_error,
    bad_input_is_refused_before_the_wire,
    another_client_attaches_to_and_cancels_a_command_by_id;
    paused:
    a_backlog_runs_in_priority_order,
    failures_are_retried_then_dead_lettered,
    a_command_past_its_timeout_is_cancelled,
    cancel_stops_a_running_handler_and_a_queued_command,
);
