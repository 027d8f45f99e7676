//! A long-running command with live progress.

use std::time::{Duration, Instant};

use aegis_sdk::{CommandContext, HandlerError, Priority, Service};
use serde_json::{json, Value};

use super::Narrator;
use crate::commands::command::{progress_bar, show_progress};
use crate::output::{stdout_is_terminal, CliResult};
use crate::Global;

pub(super) async fn run(global: &Global, say: &Narrator) -> CliResult<Value> {
    say.step("commands: send `generate` to reports; progress arrives as it happens");
    let worker = Service::builder("reports")
        .on_command(
            "generate",
            |ctx: CommandContext, params: Value| async move {
                let rows = params["rows"].as_u64().unwrap_or(100);
                for step in 0..=10u32 {
                    ctx.progress(f64::from(step) * 10.0, format!("step {step} of 10"))
                        .await?;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                Ok::<_, HandlerError>(json!({"rows": rows, "status": "done"}))
            },
        )
        .build()?;
    worker.start(&global.connect().await?).await?;

    let client = global.connect().await?;
    let started = Instant::now();
    let mut handle = client
        .send_command("reports", "generate", json!({"rows": 500}))
        .priority(Priority::High)
        .timeout(Duration::from_secs(30))
        .await?;
    say.line(&format!("command id {}", handle.id()));
    let mut updates = 0;
    // A bar redrawn in place on a terminal; one line per update anywhere else.
    let terminal = stdout_is_terminal();
    let bar = progress_bar(!say.json && terminal, "    ");
    while let Some(progress) = handle.next_progress().await {
        updates += 1;
        if !terminal {
            say.line(&format!("{:>5.1}% {}", progress.percent, progress.message));
        }
        show_progress(&bar, progress.percent, &progress.message);
    }
    // The finished bar stays; what follows goes below it.
    bar.finish();
    if !bar.is_hidden() {
        println!();
    }
    let result: Value = handle.result().await?;
    let round_trip = started.elapsed();
    say.line(&format!("result {result} after {round_trip:?}"));
    worker.stop().await?;
    Ok(json!({
        "progress_updates": updates,
        "result": result,
        "round_trip_ms": round_trip.as_secs_f64() * 1000.0,
    }))
}
