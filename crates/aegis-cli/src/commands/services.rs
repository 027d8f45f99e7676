//! `aegis services [NAME] [--watch]`: the registered instances as a table.
//!
//! An instance's own entry may lag behind: one killed outright keeps its last entry
//! (ACTIVE, even leader) until its time-to-live runs out. So the LEADER column comes
//! from the election lease (who holds it now), not from the entry, and an entry whose
//! last heartbeat is older than two heartbeat intervals is marked stale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aegis_sdk::adapters::nats::NatsKvStore;
use aegis_sdk::application::registry::ServiceRegistry;
use aegis_sdk::domain::election::{bucket_name, leader_key, GroupName, LeaderRecord};
use aegis_sdk::domain::instance::{ServiceInstance, REGISTRY_BUCKET};
use aegis_sdk::ports::kv::KvStore;
use aegis_sdk::{Client, ErrorKind, ServiceName};
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::output::{print_json, seconds, stdout_is_terminal, CliError, CliResult, Limits, Table};
use crate::Global;

/// How long a burst of registry changes may take to be drawn as one.
const BURST: Duration = Duration::from_millis(50);

/// The heartbeat interval of an entry that does not say its own: such entries come from
/// Python peers (or older Rust ones), and the Python SDK beats every 10 s.
const DEFAULT_HEARTBEAT_INTERVAL: f64 = 10.0;

/// The holder of each single-active group's lease, by (service, group); `None` when
/// nobody holds it.
type Leaders = HashMap<(String, String), Option<String>>;

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
            return Err(
                CliError::new(format!("no registered instances of service {service}"))
                    .kind("not_found"),
            );
        }
        let leaders = leaders(&client, &instances).await?;
        show(global.json, &instances, &leaders, false);
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
        let leaders = leaders(&client, &instances).await?;
        show(global.json, &instances, &leaders, true);
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

/// The current lease holder of every single-active group among `instances`, read
/// from the election buckets (never created here).
async fn leaders(client: &Client, instances: &[ServiceInstance]) -> CliResult<Leaders> {
    let mut leaders = Leaders::new();
    let nats = client
        .nats()
        .ok_or_else(|| CliError::new("not connected to NATS"))?;
    for instance in instances {
        let Some(group) = &instance.sticky_active_group else {
            continue;
        };
        let id = (instance.service_name.clone(), group.clone());
        if leaders.contains_key(&id) {
            continue;
        }
        // Entries written by others may hold names that are not valid here.
        let (Ok(service), Ok(group)) = (
            ServiceName::new(instance.service_name.as_str()),
            GroupName::new(group.as_str()),
        ) else {
            leaders.insert(id, None);
            continue;
        };
        let holder = match NatsKvStore::open_existing(nats, &bucket_name(&service)).await {
            Ok(store) => store
                .get(&leader_key(&service, &group))
                .await?
                .and_then(|entry| LeaderRecord::from_json(&entry.value).ok())
                .map(|record| record.instance_id),
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(error) => return Err(error.into()),
        };
        leaders.insert(id, holder);
    }
    Ok(leaders)
}

/// Seconds since the instance's last heartbeat, if it can be read.
fn heartbeat_age(instance: &ServiceInstance) -> Option<f64> {
    let at = instance.last_heartbeat_at()?;
    Some(((Utc::now() - at).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// The instance's heartbeat interval in seconds: as its entry says
/// (`metadata.heartbeatIntervalSeconds`), else the default.
fn heartbeat_interval(instance: &ServiceInstance) -> f64 {
    instance
        .metadata
        .get("heartbeatIntervalSeconds")
        .and_then(Value::as_f64)
        .filter(|secs| *secs > 0.0)
        .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL)
}

/// Whether the entry missed its heartbeats: older than two intervals, or unreadable.
fn is_stale(instance: &ServiceInstance) -> bool {
    heartbeat_age(instance).is_none_or(|age| age > 2.0 * heartbeat_interval(instance))
}

/// Whether the instance holds its group's lease; `None` outside single-active mode.
fn is_leader(instance: &ServiceInstance, leaders: &Leaders) -> Option<bool> {
    let group = instance.sticky_active_group.as_ref()?;
    let holder = leaders.get(&(instance.service_name.clone(), group.clone()))?;
    Some(holder.as_deref() == Some(instance.instance_id.as_str()))
}

/// The instance's role in its single-active group, from the lease: `leader (default)`,
/// `standby (default)`, or `-`.
fn leader_cell(instance: &ServiceInstance, leaders: &Leaders) -> String {
    match (is_leader(instance, leaders), &instance.sticky_active_group) {
        (Some(true), Some(group)) => format!("leader ({group})"),
        (Some(false), Some(group)) => format!("standby ({group})"),
        (_, Some(group)) => format!("? ({group})"),
        (_, None) => "-".to_owned(),
    }
}

/// Prints one listing; while watching, a terminal is redrawn from the top and anything
/// else gets the listings one after the other.
fn show(as_json: bool, instances: &[ServiceInstance], leaders: &Leaders, watching: bool) {
    let redraw = watching && stdout_is_terminal();
    if as_json {
        let rows: Vec<Value> = instances
            .iter()
            .map(|instance| {
                let mut row = serde_json::to_value(instance).unwrap_or(Value::Null);
                if let Some(object) = row.as_object_mut() {
                    object.insert("heartbeatAgeSeconds".into(), json!(heartbeat_age(instance)));
                    object.insert("stale".into(), json!(is_stale(instance)));
                    object.insert("leader".into(), json!(is_leader(instance, leaders)));
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
    for instance in instances {
        let heartbeat = match heartbeat_age(instance) {
            Some(age) => format!("{age:.1}s ago"),
            None => "unreadable".to_owned(),
        };
        let mut status = instance.status.as_str().to_owned();
        if is_stale(instance) {
            status.push_str(" (stale)");
        }
        table.row(vec![
            instance.service_name.clone(),
            instance.instance_id.clone(),
            instance.version.clone(),
            status,
            leader_cell(instance, leaders),
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
