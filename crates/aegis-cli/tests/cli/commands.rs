//! `aegis command send|status|cancel` against an in-process worker.

use std::time::Duration;

use aegis_sdk::{Client, CommandContext, ConnectOptions, HandlerError, Service};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

use crate::support::{eventually, run, Spawned};

async fn reports(url: &str) -> Service {
    let service = Service::builder("reports")
        .on_command(
            "generate",
            |ctx: CommandContext, params: Value| async move {
                for step in 0..=4u32 {
                    ctx.progress(f64::from(step) * 25.0, format!("step {step}"))
                        .await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok::<_, HandlerError>(
                    json!({"rows": params["rows"], "priority": ctx.priority().as_str()}),
                )
            },
        )
        .on_command("explode", |_: CommandContext, _: Value| async move {
            Err::<Value, _>(HandlerError::msg("the printer is on fire"))
        })
        .on_command("linger", |ctx: CommandContext, _: Value| async move {
            ctx.progress(10.0, "lingering").await?;
            ctx.cancelled().await;
            Err::<Value, _>(HandlerError::msg("cancelled"))
        })
        .build()
        .unwrap();
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    service.start(&client).await.unwrap();
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_send_shows_the_result_and_fails_with_one_line() {
    let server = NatsServer::start();
    let url = server.url();
    let worker = reports(&url).await;

    // JSON: the final record, nothing else on stdout.
    let record = run(
        &url,
        &[
            "command",
            "send",
            "reports",
            "generate",
            r#"{"rows": 7}"#,
            "--priority",
            "high",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(record["state"], "succeeded");
    assert_eq!(record["result"], json!({"rows": 7, "priority": "high"}));
    assert_eq!(record["progress"]["percent"], 100.0);
    let id = record["command_id"].as_str().unwrap().to_owned();

    // For people, not on a terminal: the id, then the result, and no progress bar.
    let human = run(
        &url,
        &["command", "send", "reports", "generate", r#"{"rows": 3}"#],
    )
    .ok();
    assert!(human.stdout.starts_with("command "), "{human:?}");
    assert!(human.stdout.contains("\"rows\": 3"), "{human:?}");
    assert!(
        !human.stdout.contains('%') && !human.stdout.contains('\r'),
        "{human:?}"
    );

    // The record is there for anyone to read.
    let status = run(&url, &["command", "status", &id, "--json"]).ok().json();
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["service"], "reports");
    let table = run(&url, &["command", "status", &id]).ok().stdout;
    assert!(table.contains("state     succeeded"), "{table}");

    // A failing command: one line naming the failure, exit 1.
    let failed = run(
        &url,
        &[
            "command",
            "send",
            "reports",
            "explode",
            "--max-retries",
            "0",
        ],
    );
    assert!(
        failed.error(1).contains("the printer is on fire"),
        "{failed:?}"
    );

    // Nobody takes it: refused at once, not queued forever.
    let nobody = run(&url, &["command", "send", "archive", "compact"]);
    assert!(nobody.error(1).contains("no worker"), "{nobody:?}");
    let queued = run(
        &url,
        &[
            "command",
            "send",
            "archive",
            "compact",
            "--queue-anyway",
            "--no-wait",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(queued["state"], "queued");
    let status = run(
        &url,
        &[
            "command",
            "status",
            queued["command_id"].as_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(status["state"], "queued");

    // Bad arguments are usage errors.
    run(&url, &["command", "send", "reports", "generate", "[1]"]).error(2);
    run(
        &url,
        &[
            "command",
            "send",
            "reports",
            "generate",
            "--priority",
            "urgent",
        ],
    )
    .error(2);
    run(&url, &["command", "send", "bad.service", "generate"]).error(2);
    run(
        &url,
        &["command", "send", "reports", "generate", "--timeout", "0"],
    )
    .error(2);
    run(&url, &["command", "status", "not an id"]).error(2);
    assert!(run(&url, &["command", "status", "f00d"])
        .error(1)
        .contains("not_found"));

    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_cancel_stops_a_running_command() {
    let server = NatsServer::start();
    let url = server.url();
    let worker = reports(&url).await;

    let sent = run(&url, &["command", "send", "reports", "linger", "--no-wait"]).ok();
    let id = sent.stdout.trim().to_owned();
    eventually(Duration::from_secs(10), || {
        let status = run(&url, &["command", "status", &id, "--json"]).json();
        (status["state"] == "running").then_some(())
    });

    let cancelled = run(&url, &["command", "cancel", &id, "--json"]).ok().json();
    assert_eq!(cancelled["command_id"], id.as_str());
    let state = eventually(Duration::from_secs(10), || {
        let status = run(&url, &["command", "status", &id, "--json"]).json();
        (status["state"] != "running").then(|| status["state"].clone())
    });
    assert_eq!(state, "cancelled");

    // Cancelling a finished command changes nothing; an unknown one is an error.
    let again = run(&url, &["command", "cancel", &id]).ok();
    assert!(again.stdout.contains("now cancelled"), "{again:?}");
    run(&url, &["command", "cancel", "no-such-command"]).error(1);

    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_send_draws_a_progress_bar_on_a_terminal() {
    let server = NatsServer::start();
    let url = server.url();
    let worker = reports(&url).await;

    // `script` gives the command a terminal of its own and copies what it draws.
    let line = format!(
        "{} --server {url} command send reports generate '{{\"rows\": 1}}'",
        env!("CARGO_BIN_EXE_aegis")
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NATS_URL")
        .output()
        .expect("script (util-linux) runs");
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{drawn}");
    assert!(
        drawn.contains("%") && drawn.contains("step"),
        "no bar drawn: {drawn:?}"
    );
    assert!(drawn.contains("\"rows\": 1"), "{drawn:?}");
    // Every frame shows a report's percent with its own message ("step 2" at 50%),
    // never a new message beside the old percent.
    let mut frames = 0;
    for (at, _) in drawn.match_indices("% step ") {
        let percent: u32 = drawn[at.saturating_sub(3)..at].trim().parse().unwrap();
        let step: u32 = drawn[at + 7..at + 8].parse().unwrap();
        assert_eq!(percent, step * 25, "frame {frames}: {drawn:?}");
        frames += 1;
    }
    assert!(frames > 0, "{drawn:?}");

    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_params_and_cancelled_commands_read_well() {
    #[derive(serde::Deserialize)]
    struct Stock {
        #[allow(dead_code)]
        sku: String,
    }
    let server = NatsServer::start();
    let url = server.url();
    let worker = reports(&url).await;
    let typed = Service::builder("typed")
        .rpc("stock", |_: aegis_sdk::RpcContext, _: Stock| async move {
            Ok::<_, HandlerError>(json!({}))
        })
        .build()
        .unwrap();
    let client = Client::connect(&ConnectOptions::new(&url)).await.unwrap();
    typed.start(&client).await.unwrap();

    // The CLI was given JSON: a refusal says what was wrong with it, and does not name
    // the MessagePack it never saw.
    let refused = run(&url, &["call", "typed", "stock", r#"{"sku": 1}"#]);
    let line = refused.error(1);
    assert!(
        line.contains("invalid `params`: at `sku`: invalid type: integer `1`, expected a string"),
        "{line}"
    );
    assert!(!line.contains("MessagePack"), "{line}");

    // A cancelled command says so once, naming its id once.
    let sender = Spawned::start(
        &url,
        &["command", "send", "reports", "linger", "--id", "lg1"],
    );
    eventually(Duration::from_secs(10), || {
        let status = run(&url, &["command", "status", "lg1", "--json"]);
        (status.code == Some(0) && status.json()["state"] == "running").then_some(())
    });
    run(&url, &["command", "cancel", "lg1"]).ok();
    let line = eventually(Duration::from_secs(10), || {
        sender.next_stderr(Duration::from_millis(100))
    });
    assert!(line.starts_with("error: "), "{line}");
    assert_eq!(line.matches("lg1").count(), 1, "{line}");
    assert!(line.contains("cancelled"), "{line}");
    let (code, _) = sender.finish(Duration::from_secs(10));
    assert_eq!(code, Some(1));
    typed.stop().await.unwrap();
    worker.stop().await.unwrap();
}
