//! Long-running commands end to end on a real nats-server started by each test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sdk::application::commands::WorkerOptions;
use aegis_sdk::{
    Client, CommandContext, CommandState, CommandStatus, ConnectOptions, ErrorKind, HandlerError,
    Priority, Service,
};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

/// Long enough for any step of these tests on a busy machine; only hit when broken.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(server: &NatsServer) -> Client {
    Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

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

/// The record of `id` once it reached `state`. The sender hears the outcome first and
/// the worker writes the record right after, so a lookup may trail by one write.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_200_commands_each_exactly_once() {
    let server = NatsServer::start();
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
        service.start(&connect(&server).await).await.unwrap();
        services.push(service);
    }

    let client = connect(&server).await;
    let mut handles = Vec::new();
    for n in 0..200u64 {
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
    assert_eq!(runs.len(), 200);
    assert!(runs.values().all(|&c| c == 1), "some ran twice: {runs:?}");
    let per_worker = per_worker.lock().unwrap().clone();
    assert_eq!(per_worker.len(), 2, "both workers busy: {per_worker:?}");
    assert_eq!(per_worker.values().sum::<usize>(), 200);
    for service in services {
        service.stop().await.unwrap();
    }
}

/// Waits until the command's consumer has handed out `count` deliveries.
async fn wait_ack_pending(server: &NatsServer, consumer: &str, count: usize) {
    let nats = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    within("deliveries", async {
        loop {
            let stream = js.get_stream("COMMANDS").await.unwrap();
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(consumer).await.unwrap();
            if consumer.info().await.unwrap().num_ack_pending == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_runs_in_priority_order() {
    let server = NatsServer::start();
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let service = Service::builder("ranked")
        .on_command_with(
            "job",
            fast_options()
                .concurrency(1)
                .lookahead(32)
                .priority_aging(Duration::from_secs(600)),
            {
                let order = order.clone();
                let gate = gate.clone();
                move |_: CommandContext, p: Value| {
                    let order = order.clone();
                    let gate = gate.clone();
                    async move {
                        let name = p["name"].as_str().unwrap().to_owned();
                        if name == "blocker" {
                            // Holds the only slot until the backlog has arrived.
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
    service.start(&connect(&server).await).await.unwrap();

    let client = connect(&server).await;
    let blocker = client
        .send_command("ranked", "job", json!({"name": "blocker"}))
        .await
        .unwrap();
    let priorities = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];
    let mut handles = Vec::new();
    for round in 0..3 {
        for priority in priorities {
            let name = format!("{priority}-{round}");
            handles.push(
                client
                    .send_command("ranked", "job", json!({"name": name}))
                    .priority(priority)
                    .await
                    .unwrap(),
            );
        }
    }
    wait_ack_pending(&server, "aegis_cmd_ranked_job", 13).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_priority_still_advances_under_sustained_high_priority_load() {
    const HIGHS: usize = 150;
    let server = NatsServer::start();
    let highs_done = Arc::new(AtomicUsize::new(0));
    let highs_done_when_low_ran = Arc::new(Mutex::new(None));
    let service = Service::builder("aging")
        .on_command_with(
            "job",
            fast_options()
                .concurrency(1)
                .lookahead(8)
                .priority_aging(Duration::from_millis(50)),
            {
                let highs_done = highs_done.clone();
                let when = highs_done_when_low_ran.clone();
                move |ctx: CommandContext, _: Value| {
                    let highs_done = highs_done.clone();
                    let when = when.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if ctx.priority() == Priority::Low {
                            *when.lock().unwrap() = Some(highs_done.load(Ordering::SeqCst));
                        } else {
                            highs_done.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok::<_, HandlerError>(json!(null))
                    }
                }
            },
        )
        .build()
        .unwrap();
    service.start(&connect(&server).await).await.unwrap();

    // A steady stream of high-priority commands, faster than the worker runs them,
    // with one low-priority command early in it.
    let client = connect(&server).await;
    let mut handles = Vec::new();
    for i in 0..HIGHS {
        let priority = if i == 3 {
            Priority::Low
        } else {
            Priority::High
        };
        handles.push(
            client
                .send_command("aging", "job", json!({}))
                .priority(priority)
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        within("job", handle.result::<Value>()).await.unwrap();
    }
    let when = highs_done_when_low_ran
        .lock()
        .unwrap()
        .expect("the low command ran");
    assert!(
        when < HIGHS - 1 - 8,
        "the low command waited for the high ones to drain: ran after {when} of {} high",
        HIGHS - 1
    );
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_handler_and_a_queued_command() {
    let server = NatsServer::start();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let client = connect(&server).await;

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
    service.start(&connect(&server).await).await.unwrap();

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

    // The queued one was handed to the worker too, and skipped: only one run.
    wait_ack_pending(&server, "aegis_cmd_cancellable_run", 0).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    final_status(&client, &queued_id, CommandState::Cancelled).await;
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_command_is_dead_lettered_and_the_worker_goes_on() {
    let server = NatsServer::start();
    let service = Service::builder("strict")
        .on_command_with(
            "run",
            fast_options(),
            |_: CommandContext, _: Value| async move { Ok::<_, HandlerError>(json!("ok")) },
        )
        .build()
        .unwrap();
    service.start(&connect(&server).await).await.unwrap();

    let nats = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    js.publish("commands.strict.run", "not an envelope".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let client = connect(&server).await;
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

    let letter = within("dead letter", async {
        loop {
            if let Ok(stream) = js.get_stream("COMMANDS_DLQ").await {
                if let Ok(m) = stream
                    .get_last_raw_message_by_subject("dlq.commands.strict.run")
                    .await
                {
                    return m;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(&letter.payload[..], b"not an envelope");
    let reason = letter.headers.get("Aegis-Dlq-Reason").unwrap().to_string();
    assert!(reason.starts_with("INVALID_REQUEST"), "{reason}");
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_commands_stream_that_is_not_a_work_queue_is_an_error() {
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "COMMANDS".into(),
        subjects: vec!["commands.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    let service = Service::builder("misconfigured")
        .on_command("run", |_: CommandContext, _: Value| async move {
            Ok::<_, HandlerError>(json!(null))
        })
        .build()
        .unwrap();
    let err = service.start(&connect(&server).await).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(err.message().contains("work-queue"), "{err}");

    let client = connect(&server).await;
    let err = client
        .send_command("misconfigured", "run", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
}

/// Kills the child process if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Set in the child process of the crash test: the server to work for.
const CHILD_URL: &str = "AEGIS_TEST_CRASH_WORKER_URL";

/// Not a test on its own: the worker process of
/// `a_killed_worker_process_command_is_run_by_another_worker`, which runs this test
/// binary again with only this function and kills it mid-command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as the child process of the crash test"]
async fn crash_test_child_worker() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    let service = Service::builder("crashy")
        .instance_id("crashy-child")
        .on_command_with(
            "work",
            fast_options().ack_wait(Duration::from_secs(2)),
            |ctx: CommandContext, _: Value| async move {
                ctx.progress(10.0, "child started").await?;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, HandlerError>(json!({"by": "child"}))
            },
        )
        .build()
        .unwrap();
    service.start(&client).await.unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_command_is_run_by_another_worker() {
    let server = NatsServer::start();
    let mut child = KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_test_child_worker",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_URL, server.url())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn the worker process"),
    );

    let client = connect(&server).await;
    // The child may not be up yet; the command waits in the queue for it.
    let mut handle = client
        .send_command("crashy", "work", json!({}))
        .await
        .unwrap();
    let first = within("child progress", handle.next_progress()).await;
    assert_eq!(first.map(|p| p.message), Some("child started".to_owned()));

    // SIGKILL: no graceful stop, no ack, no nak.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let service = Service::builder("crashy")
        .instance_id("crashy-survivor")
        .on_command_with(
            "work",
            fast_options().ack_wait(Duration::from_secs(2)),
            |ctx: CommandContext, _: Value| async move {
                Ok::<_, HandlerError>(
                    json!({"by": ctx.instance_id().as_str(), "attempt": ctx.attempt()}),
                )
            },
        )
        .build()
        .unwrap();
    service.start(&connect(&server).await).await.unwrap();

    let id = handle.id().to_owned();
    let result: Value = within("result after the crash", handle.result())
        .await
        .unwrap();
    assert_eq!(result, json!({"by": "crashy-survivor", "attempt": 2}));
    let status = final_status(&client, &id, CommandState::Succeeded).await;
    assert_eq!(status.worker.as_deref(), Some("crashy-survivor"));
    service.stop().await.unwrap();
}
