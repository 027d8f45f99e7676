//! A batch processor: a worker that runs `process_batch` commands with progress, and a
//! sender that shows the progress as it arrives. Exits by itself.
//!
//! Run it against a local server (start one with `cargo run -p aegis-cli -- server`):
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p aegis-examples --example batch_processor
//! ```

use std::time::Duration;

use aegis_sdk::application::commands::WorkerOptions;
use aegis_sdk::{Client, CommandContext, ConnectOptions, HandlerError, Priority, Service};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Batch {
    items: Vec<u32>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Summary {
    processed: usize,
    sum: u64,
    worker: String,
}

/// Processes the items one by one, reporting progress after each tenth of the batch.
async fn process_batch(ctx: CommandContext, batch: Batch) -> Result<Summary, HandlerError> {
    let total = batch.items.len().max(1);
    ctx.progress(0.0, format!("received {} items", batch.items.len()))
        .await?;
    let mut sum = 0u64;
    for (done, item) in batch.items.iter().enumerate() {
        // Stand-in for real work; stop early when the sender cancels.
        tokio::select! {
            _ = ctx.cancelled() => return Err(HandlerError::msg("cancelled")),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        sum += u64::from(*item);
        let done = done + 1;
        if done % (total / 10).max(1) == 0 && done < total {
            let percent = done as f64 * 100.0 / total as f64;
            ctx.progress(percent, format!("{done}/{total} items"))
                .await?;
        }
    }
    ctx.progress(100.0, "batch done").await?;
    Ok(Summary {
        processed: batch.items.len(),
        sum,
        worker: ctx.instance_id().to_string(),
    })
}

/// Prints a line for the person running the example.
fn say(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout(), "{line}")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aegis_examples::finish(run().await)
}

async fn run() -> aegis_examples::Result {
    aegis_examples::init_tracing();
    let url = aegis_examples::nats_url();

    // The worker side: a service with one command handler, two at a time.
    let worker = Service::builder("batch-processor")
        .on_command_with(
            "process_batch",
            WorkerOptions::default().concurrency(2),
            process_batch,
        )
        .build()?;
    worker
        .start(&Client::connect(&ConnectOptions::new(url.clone())).await?)
        .await?;

    // The sender side, on its own connection as it would be in another process.
    let sender = Client::connect(&ConnectOptions::new(url)).await?;
    let mut handle = sender
        .send_command(
            "batch-processor",
            "process_batch",
            Batch {
                items: (1..=50).collect(),
            },
        )
        .priority(Priority::High)
        .timeout(Duration::from_secs(30))
        .await?;
    say(&format!("sent command {}", handle.id()))?;
    while let Some(progress) = handle.next_progress().await {
        say(&format!(
            "  {:>5.1}%  {}",
            progress.percent, progress.message
        ))?;
    }
    let summary: Summary = handle.result().await?;
    say(&format!("result: {summary:?}"))?;

    worker.stop().await?;
    Ok(())
}
