//! `aegis services [NAME] [--watch]`: the registered instances as a table.

use std::sync::Arc;
use std::time::Duration;

use aegis_sdk::adapters::nats::NatsKvStore;
use aegis_sdk::application::discovery::Discovery;
use aegis_sdk::application::registry::ServiceRegistry;
use aegis_sdk::domain::instance::{ServiceInstance, REGISTRY_BUCKET};
use aegis_sdk::{Client, ErrorKind, ServiceName};
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::output::{print_json, seconds, stdout_is_terminal, CliError, CliResult, Limits, Table};
use crate::Global;

/// How long a burst of registry changes may take to be drawn as one.
const BURST: Duration = Duration::from_millis(50);

/// Arguments of `aegis services`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only the instances of this service.
    name: Option<String>,
    /// Keep the listing up to date until Ctrl-C (or `--count` refreshes, or `--for`).
    #[arg(long)]
    watch: bool,
    /// With `--watch`: seconds between refreshes (changes also refresh at once).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = seconds)]
    interval: Duration,
    #[command(flatten)]
    limits: Limits,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let service = args.name.as_deref().map(ServiceName::new).transpose()?;
    let client = global.connect_jetstream().await?;
    if !args.watch {
        let instances = list(&client, service.as_ref()).await?;
        if let (Some(service), true) = (&service, instances.is_empty()) {
            return Err(CliError::new(format!(
                "no registered instances of service {service}"
            ))
            .kind("not_found"));
        }
        show(global.json, &instances, false);
        return Ok(());
    }

    // Watch: redraw on every tick and, sooner, on every change of the registry. The
    // registry watch is opened once the bucket exists; until then ticks keep trying.
    let mut changes = None;
    let mut tick = tokio::time::interval(args.interval);
    let mut frames = 0;
    let stop = args.limits.stopped();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
            change = next_change(&mut changes) => {
                // Changes come in bursts (a start, the current entries of a new watch):
                // take what follows within a moment, then draw once; a steady stream
                // of changes still gets drawn every few moments.
                let mut open = change.is_some();
                let burst_end = tokio::time::Instant::now() + BURST * 5;
                while open && tokio::time::Instant::now() < burst_end {
                    match tokio::time::timeout(BURST, next_change(&mut changes)).await {
                        Ok(Some(())) => {}
                        Ok(None) => open = false,
                        Err(_) => break,
                    }
                }
                if !open {
                    changes = None;
                }
            }
        }
        if changes.is_none() {
            if let Some(registry) = registry(&client).await? {
                changes = registry.watch().await.ok();
            }
        }
        let instances = list(&client, service.as_ref()).await?;
        show(global.json, &instances, true);
        frames += 1;
        if args.limits.reached(frames) {
            break;
        }
    }
    Ok(())
}

async fn next_change(changes: &mut Option<aegis_sdk::ports::kv::KvWatch>) -> Option<()> {
    match changes {
        Some(watch) => watch.next().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// The registry, if its bucket exists: listing must not create it.
async fn registry(client: &Client) -> CliResult<Option<ServiceRegistry>> {
    let nats = client
        .nats()
        .ok_or_else(|| CliError::new("not connected to NATS"))?;
    match NatsKvStore::open_existing(nats, REGISTRY_BUCKET).await {
        Ok(store) => Ok(Some(ServiceRegistry::new(Arc::new(store)))),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The registered instances, sorted by service and instance.
async fn list(client: &Client, service: Option<&ServiceName>) -> CliResult<Vec<ServiceInstance>> {
    let Some(registry) = registry(client).await? else {
        return Ok(Vec::new());
    };
    let mut instances = match service {
        Some(service) => registry.list(service).await?,
        None => registry.list_all().await?,
    };
    instances
        .sort_by(|a, b| (&a.service_name, &a.instance_id).cmp(&(&b.service_name, &b.instance_id)));
    Ok(instances)
}

/// Seconds since the instance's last heartbeat, if it can be read.
fn heartbeat_age(instance: &ServiceInstance) -> Option<f64> {
    let at = instance.last_heartbeat_at()?;
    Some(((Utc::now() - at).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// The instance's role in its single-active group: `ACTIVE (default)`, or `-`.
fn leader_cell(instance: &ServiceInstance) -> String {
    match (
        &instance.sticky_active_status,
        &instance.sticky_active_group,
    ) {
        (Some(status), Some(group)) => format!("{status} ({group})"),
        (Some(status), None) => status.clone(),
        (None, Some(group)) => format!("? ({group})"),
        (None, None) => "-".to_owned(),
    }
}

/// Prints one listing; while watching, a terminal is redrawn from the top and anything
/// else gets the listings one after the other.
fn show(as_json: bool, instances: &[ServiceInstance], watching: bool) {
    let redraw = watching && stdout_is_terminal();
    if as_json {
        let rows: Vec<Value> = instances
            .iter()
            .map(|instance| {
                let mut row = serde_json::to_value(instance).unwrap_or(Value::Null);
                if let Some(object) = row.as_object_mut() {
                    object.insert("heartbeatAgeSeconds".into(), json!(heartbeat_age(instance)));
                }
                row
            })
            .collect();
        print_json(&Value::Array(rows));
        return;
    }
    let mut table = Table::new(&[
        "SERVICE",
        "INSTANCE",
        "VERSION",
        "STATUS",
        "LEADER",
        "HEARTBEAT",
    ]);
    let stale_after = Discovery::DEFAULT_STALE_AFTER.as_secs_f64();
    for instance in instances {
        let heartbeat = match heartbeat_age(instance) {
            Some(age) if age > stale_after => format!("{age:.1}s ago (stale)"),
            Some(age) => format!("{age:.1}s ago"),
            None => "unreadable".to_owned(),
        };
        table.row(vec![
            instance.service_name.clone(),
            instance.instance_id.clone(),
            instance.version.clone(),
            instance.status.as_str().to_owned(),
            leader_cell(instance),
            heartbeat,
        ]);
    }
    if redraw {
        // Clear the terminal and draw from the top.
        print!("\x1b[2J\x1b[H");
    }
    if instances.is_empty() {
        println!("no registered instances");
    } else {
        print!("{}", table.render());
    }
    if redraw {
        println!("\n{} (Ctrl-C to stop)", Utc::now().format("%H:%M:%S"));
    } else if watching {
        println!();
    }
}
