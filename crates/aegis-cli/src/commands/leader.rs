//! `aegis leader SERVICE [--group G]`: who leads a single-active group, with which
//! fencing token, since when. Reads the lease; takes no part in the election.

use aegis_sdk::adapters::nats::NatsKvStore;
use aegis_sdk::domain::election::{
    bucket_name, epoch_seconds, leader_key, GroupName, LeaderRecord, DEFAULT_GROUP,
};
use aegis_sdk::ports::kv::KvStore;
use aegis_sdk::{ErrorKind, ServiceName};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::output::{print_json, CliError, CliResult};
use crate::Global;

/// Arguments of `aegis leader`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The single-active service.
    service: String,
    /// The group within the service.
    #[arg(long, default_value = DEFAULT_GROUP)]
    group: String,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let service = ServiceName::new(args.service.as_str())?;
    let group = GroupName::new(args.group.as_str())?;
    let client = global.connect_jetstream().await?;
    let nats = client
        .nats()
        .ok_or_else(|| CliError::new("not connected to NATS"))?;

    // Opening the bucket as it is: a reader must not create or change it.
    let bucket = bucket_name(&service);
    let store = match NatsKvStore::open_existing(nats, &bucket).await {
        Ok(store) => store,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            return Err(CliError::new(format!(
                "service {service} has never elected a leader (no bucket {bucket})"
            ))
            .kind("not_found"))
        }
        Err(error) => return Err(error.into()),
    };
    let entry = store
        .get(&leader_key(&service, &group))
        .await?
        .ok_or_else(|| {
            CliError::new(format!("no leader of {service} group {group} now")).kind("not_found")
        })?;
    let record = LeaderRecord::from_json(&entry.value)?;

    let token = record.fencing_token(entry.revision);
    let now = epoch_seconds();
    if global.json {
        print_json(&json!({
            "service": service.as_str(),
            "group": group.as_str(),
            "leader": record.instance_id,
            "fencing_token": token,
            "elected_at": time(record.elected_at),
            "last_heartbeat": time(record.last_heartbeat),
            "term_seconds": (now - record.elected_at).max(0.0),
            "heartbeat_age_seconds": (now - record.last_heartbeat).max(0.0),
            "revision": entry.revision,
            "metadata": record.metadata,
        }));
    } else {
        let token = token.map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        println!("service        {service} (group {group})");
        println!("leader         {}", record.instance_id);
        println!("fencing token  {token}");
        println!(
            "since          {} ({:.1}s)",
            time(record.elected_at),
            (now - record.elected_at).max(0.0)
        );
        println!(
            "last renewal   {:.1}s ago",
            (now - record.last_heartbeat).max(0.0)
        );
    }
    Ok(())
}

/// Epoch seconds as ISO-8601 UTC.
fn time(epoch: f64) -> String {
    DateTime::<Utc>::from_timestamp_micros((epoch * 1e6) as i64)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| epoch.to_string())
}
