//! `aegis command send|status|cancel`: long-running commands over the `COMMANDS` queue.

use std::time::Duration;

use aegis_sdk::domain::command_status::STREAM;
use aegis_sdk::domain::event_pattern::subject_covers;
use aegis_sdk::ports::Headers;
use aegis_sdk::{Client, CommandState, CommandStatus, MethodName, Priority, ServiceName};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::output::{
    interrupted, json_object, plain, print_json, seconds, stdout_is_terminal, CliError, CliResult,
};
use crate::Global;

/// The subcommands of `aegis command`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Send a command, show its progress live, then its result.
    Send(SendArgs),
    /// Show what is recorded about a command (from any process).
    Status(IdArgs),
    /// Ask for a command to be cancelled (queued: it will not run; running: its
    /// handler is cancelled).
    Cancel(IdArgs),
}

/// clap's spelling of [`Priority`].
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PriorityArg {
    Low,
    Normal,
    High,
    Critical,
}

impl From<PriorityArg> for Priority {
    fn from(value: PriorityArg) -> Self {
        match value {
            PriorityArg::Low => Priority::Low,
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::High => Priority::High,
            PriorityArg::Critical => Priority::Critical,
        }
    }
}

/// Arguments of `aegis command send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The service whose workers run the command.
    service: String,
    /// The command name.
    name: String,
    /// The payload as a JSON object (default `{}`).
    payload: Option<String>,
    /// Priority among the commands waiting.
    #[arg(long, value_enum, default_value = "normal")]
    priority: PriorityArg,
    /// Seconds one run may take before it is cancelled.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = seconds)]
    timeout: Duration,
    /// How many times a failed run is retried.
    #[arg(long, default_value_t = 3)]
    max_retries: u32,
    /// The command id (default a new UUID); sending an id again follows the first one.
    #[arg(long)]
    id: Option<String>,
    /// Print the id once the command is queued, and do not wait for it.
    #[arg(long)]
    no_wait: bool,
    /// Send even when no worker takes this command yet (it waits in the queue).
    #[arg(long)]
    queue_anyway: bool,
}

/// A command id.
#[derive(Debug, clap::Args)]
pub(crate) struct IdArgs {
    /// The command id.
    id: String,
}

pub(crate) async fn run(global: &Global, command: Command) -> CliResult {
    match command {
        Command::Send(args) => send(global, args).await,
        Command::Status(args) => {
            let client = global.connect_jetstream().await?;
            let status = client.command_status(&args.id).await?;
            show_status(global.json, &status);
            Ok(())
        }
        Command::Cancel(args) => {
            let client = global.connect_jetstream().await?;
            client.cancel_command(&args.id).await?;
            let status = client.command_status(&args.id).await?;
            if global.json {
                print_json(&serde_json::to_value(&status).unwrap_or(Value::Null));
            } else {
                println!(
                    "cancel requested for {}; now {}",
                    status.command_id,
                    state_name(status.state)
                );
            }
            Ok(())
        }
    }
}

async fn send(global: &Global, args: SendArgs) -> CliResult {
    let service = ServiceName::new(args.service.as_str())?;
    let name = MethodName::new(args.name.as_str())?;
    let payload = json_object(args.payload.as_deref(), "payload")?;
    // As JSON, like `call`: a worker refusing the payload names the encoding given.
    let client = global
        .connect_jetstream()
        .await?
        .with_encoding(aegis_sdk::domain::Encoding::Json);
    if !args.queue_anyway && !has_worker(&client, &service, &name).await? {
        return Err(CliError::new(format!(
            "no worker takes command {name} of service {service} (nothing consumes \
             commands.{service}.{name}); --queue-anyway sends it all the same"
        ))
        .kind("no_responders"));
    }

    let mut sending = client
        .send_command(service.as_str(), name.as_str(), payload)
        .priority(args.priority.into())
        .timeout(args.timeout)
        .max_retries(args.max_retries);
    if let Some(id) = args.id {
        sending = sending.id(id);
    }
    let mut handle = sending.await?;
    let id = handle.id().to_owned();
    if args.no_wait {
        if global.json {
            print_json(&json!({"command_id": id, "state": "queued"}));
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    if !global.json {
        println!("command {id} sent to {service}.{name}");
    }

    // The bar only on a terminal, and never in JSON mode.
    let bar = progress_bar(!global.json && stdout_is_terminal(), "    ");
    show_progress(&bar, 0.0, "queued");
    // Ctrl-C stops the waiting, not the command.
    let finished = tokio::select! {
        _ = interrupted() => None,
        status = async {
            while let Some(progress) = handle.next_progress().await {
                show_progress(&bar, progress.percent, &progress.message);
            }
            handle.wait().await
        } => Some(status),
    };
    bar.finish_and_clear();
    let Some(status) = finished else {
        return Err(CliError::new(format!(
            "stopped waiting; command {id} goes on (aegis command status {id})"
        )));
    };
    let status = status?;

    if global.json {
        print_json(&serde_json::to_value(&status).unwrap_or(Value::Null));
    }
    match status.outcome() {
        Some(Ok(result)) => {
            if !global.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string())
                );
            }
            Ok(())
        }
        // The recorded error often names the command already ("command X was
        // cancelled"): then it is the whole line.
        Some(Err(error)) => {
            let message = if error.message().contains(&id) {
                error.message().to_owned()
            } else {
                format!(
                    "command {id} {}: {}",
                    state_name(status.state),
                    error.message()
                )
            };
            Err(CliError::new(message).kind(error.kind().as_str()))
        }
        None => Err(CliError::new(format!("command {id} did not finish"))),
    }
}

/// Whether a consumer of the `COMMANDS` stream takes `commands.{service}.{name}`: the
/// SDK's workers and Python's alike have one, so none means nobody would run it. Asks
/// the JetStream API on the client's own connection (first 256 consumers).
async fn has_worker(client: &Client, service: &ServiceName, name: &MethodName) -> CliResult<bool> {
    let reply = client
        .transport()
        .request(
            format!("$JS.API.CONSUMER.LIST.{STREAM}"),
            Headers::new(),
            Bytes::from_static(b"{}"),
            Duration::from_secs(3),
        )
        .await?;
    let listing: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| CliError::new(format!("cannot read the workers of {STREAM}: {e}")))?;
    if listing.get("error").is_some() {
        // No stream yet: nobody ever took a command.
        return Ok(false);
    }
    let subject = format!("commands.{service}.{name}");
    let consumers = listing["consumers"].as_array().cloned().unwrap_or_default();
    Ok(consumers.iter().any(|consumer| {
        let config = &consumer["config"];
        let mut filters: Vec<&str> = config["filter_subjects"]
            .as_array()
            .map(|all| all.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(filter) = config["filter_subject"].as_str().filter(|f| !f.is_empty()) {
            filters.push(filter);
        }
        filters.is_empty() || filters.iter().any(|f| subject_covers(f, &subject))
    }))
}

/// Width of the drawn bar, in characters.
const BAR_WIDTH: usize = 30;

/// Shows a progress report, `[=====>    ]  50% message`, as one frame. The whole line
/// is the bar's message (one redraw): a position and a message set one after the other
/// draw twice, and the first frame pairs the new percent with the old message.
pub(crate) fn show_progress(bar: &ProgressBar, percent: f64, message: &str) {
    bar.set_message(progress_line(percent, message));
}

/// `[=====>    ]  50% message`.
fn progress_line(percent: f64, message: &str) -> String {
    let percent = percent.clamp(0.0, 100.0).round() as usize;
    let filled = percent * BAR_WIDTH / 100;
    let mut drawn = "=".repeat(filled);
    if filled < BAR_WIDTH {
        drawn.push(if filled > 0 { '>' } else { ' ' });
        drawn.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    format!("[{drawn}] {percent:>3}% {message}")
}

/// A progress line redrawn in place on stdout, indented by `indent`; hidden unless
/// `visible`. Update it with [`show_progress`].
pub(crate) fn progress_bar(visible: bool, indent: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template(&format!("{indent}{{msg}}")) {
        bar.set_style(style);
    }
    bar
}

fn state_name(state: CommandState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

fn show_status(as_json: bool, status: &CommandStatus) {
    if as_json {
        print_json(&serde_json::to_value(status).unwrap_or(Value::Null));
        return;
    }
    let progress = match &status.progress {
        Some(progress) => format!("{:.0}% {}", progress.percent, progress.message),
        None => "-".to_owned(),
    };
    let rows = [
        ("id", status.command_id.clone()),
        ("service", status.service.clone()),
        ("command", status.command.clone()),
        ("state", state_name(status.state)),
        ("priority", status.priority.as_str().to_owned()),
        ("attempt", status.attempt.to_string()),
        ("progress", progress),
        (
            "worker",
            status.worker.clone().unwrap_or_else(|| "-".into()),
        ),
        ("updated", status.updated_at.clone()),
        (
            "result",
            status
                .result
                .as_ref()
                .map(plain)
                .unwrap_or_else(|| "-".into()),
        ),
        ("error", status.error.clone().unwrap_or_else(|| "-".into())),
    ];
    for (name, value) in rows {
        println!("{name:<9} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn progress_lines_pair_the_bar_percent_and_message() {
        let empty = format!("[{}]   0% queued", " ".repeat(30));
        assert_eq!(progress_line(0.0, "queued"), empty);
        let half = format!("[{}>{}]  50% step 2", "=".repeat(15), " ".repeat(14));
        assert_eq!(progress_line(50.0, "step 2"), half);
        let full = format!("[{}] 100% done", "=".repeat(30));
        assert_eq!(progress_line(120.0, "done"), full);
    }
}
