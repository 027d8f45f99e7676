//! A long-running command with live progress.

use std::io::Write;
use std::time::{Duration, Instant};

use aegis_sdk::{CommandContext, HandlerError, Priority, Service};
use serde_json::{json, Value};

use super::Narrator;
use crate::output::CliResult;
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
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    while let Some(progress) = handle.next_progress().await {
        updates += 1;
        if !say_is_quiet(say) && !terminal {
            say.line(&format!("{:>5.1}% {}", progress.percent, progress.message));
        } else if !say_is_quiet(say) {
            let filled = (progress.percent / 5.0).round() as usize;
            print!(
                "\r    [{:<20}] {:>5.1}% {}",
                "#".repeat(filled.min(20)),
                progress.percent,
                progress.message
            );
            let _ = std::io::stdout().flush();
        }
    }
    if !say_is_quiet(say) && terminal {
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

fn say_is_quiet(say: &Narrator) -> bool {
    say.json
}
