//! `aegis kv get|put|create|update|del|ls|history|watch BUCKET ...`.
//!
//! Values are written as given (the bytes of the argument: JSON text stays JSON, which
//! is what the SDK's typed KV and Python peers store) and shown as text; a value that
//! is not UTF-8 but MessagePack is shown as JSON. Only writes create a missing bucket.

use std::sync::Arc;
use std::time::Duration;

use aegis_sdk::adapters::nats::NatsKvStore;
use aegis_sdk::domain::codec;
use aegis_sdk::ports::kv::{
    BucketConfig, KvChange, KvEntry, KvOperation, KvStore, WatchStart, WatchTarget,
};
use aegis_sdk::Client;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::output::{print_json, seconds, CliError, CliResult, Limits, Table};
use crate::Global;

/// The subcommands of `aegis kv`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the current value of a key.
    Get(KeyArgs),
    /// Write a value (creating the bucket if needed); prints the revision.
    Put(WriteArgs),
    /// Write a value only if the key has none.
    Create(WriteArgs),
    /// Write a value only if the key is still at `--revision`.
    Update(UpdateArgs),
    /// Delete a key.
    Del(DeleteArgs),
    /// List the keys (starting with PREFIX).
    Ls(ListArgs),
    /// Show the revisions of a key, newest first.
    History(HistoryArgs),
    /// Print changes as they happen, current values first.
    Watch(WatchArgs),
}

/// A bucket and a key.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// The bucket.
    bucket: String,
    /// The key.
    key: String,
}

/// A key and the value to write.
#[derive(Debug, clap::Args)]
pub(crate) struct WriteArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The value, stored as given; `-` reads it from stdin.
    value: String,
    /// Seconds until the key expires (at least 1; the bucket must allow per-key TTL).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    ttl: Option<Duration>,
    /// Revisions kept per key, when the bucket has to be created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    history: u8,
}

/// Arguments of `aegis kv update`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The value, stored as given; `-` reads it from stdin.
    value: String,
    /// The revision the key must still be at (0: never written).
    #[arg(long)]
    revision: u64,
    /// Seconds until the key expires.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    ttl: Option<Duration>,
}

/// Arguments of `aegis kv del`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Delete only if the key is still at this revision.
    #[arg(long)]
    revision: Option<u64>,
    /// Purge: remove the key's history too.
    #[arg(long)]
    purge: bool,
}

/// Arguments of `aegis kv ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The bucket.
    bucket: String,
    /// Only keys starting with this.
    #[arg(default_value = "")]
    prefix: String,
}

/// Arguments of `aegis kv history`.
#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// At most this many revisions (at least 1).
    #[arg(long, default_value_t = 10, value_parser = crate::output::positive)]
    limit: u64,
}

/// Arguments of `aegis kv watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// The bucket.
    bucket: String,
    /// Only keys starting with this (default: every key).
    #[arg(default_value = "")]
    prefix: String,
    /// Treat PREFIX as one exact key.
    #[arg(long)]
    exact: bool,
    /// Only changes made from now on, without the current values.
    #[arg(long)]
    new_only: bool,
    #[command(flatten)]
    limits: Limits,
}

pub(crate) async fn run(global: &Global, command: Command) -> CliResult {
    let client = global.connect_jetstream().await?;
    let json = global.json;
    match command {
        Command::Get(args) => {
            let store = existing(&client, &args.bucket).await?;
            let entry = store.get(&args.key).await?.ok_or_else(|| {
                CliError::new(format!("no key {} in bucket {}", args.key, args.bucket))
                    .kind("not_found")
            })?;
            if json {
                print_json(&entry_json(&entry));
            } else {
                // As stored, ending in exactly one newline.
                let value = text(&entry.value);
                if value.ends_with('\n') {
                    print!("{value}");
                } else {
                    println!("{value}");
                }
            }
        }
        Command::Put(args) => {
            let store = writable(&client, &args.key.bucket, args.history).await?;
            let value = value_bytes(args.value)?;
            let revision = store.put(&args.key.key, value, args.ttl).await?;
            written(json, &args.key, revision);
        }
        Command::Create(args) => {
            let store = writable(&client, &args.key.bucket, args.history).await?;
            let value = value_bytes(args.value)?;
            let revision = store.create(&args.key.key, value, args.ttl).await?;
            written(json, &args.key, revision);
        }
        Command::Update(args) => {
            let store = existing(&client, &args.key.bucket).await?;
            let value = value_bytes(args.value)?;
            let revision = store
                .update(&args.key.key, value, args.revision, args.ttl)
                .await?;
            written(json, &args.key, revision);
        }
        Command::Del(args) => {
            let store = existing(&client, &args.key.bucket).await?;
            if args.purge {
                store.purge(&args.key.key, args.revision).await?;
            } else {
                store.delete(&args.key.key, args.revision).await?;
            }
            let done = if args.purge { "purged" } else { "deleted" };
            if json {
                print_json(&json!({"bucket": args.key.bucket, "key": args.key.key, done: true}));
            } else {
                println!("{done} {}", args.key.key);
            }
        }
        Command::Ls(args) => {
            let store = existing(&client, &args.bucket).await?;
            let keys = store.keys(&args.prefix).await?;
            if json {
                print_json(&json!(keys));
            } else {
                for key in keys {
                    println!("{key}");
                }
            }
        }
        Command::History(args) => {
            let store = existing(&client, &args.key.bucket).await?;
            let history = store
                .history(
                    &args.key.key,
                    usize::try_from(args.limit).unwrap_or(usize::MAX),
                )
                .await?;
            if history.is_empty() {
                return Err(CliError::new(format!(
                    "no key {} in bucket {}",
                    args.key.key, args.key.bucket
                ))
                .kind("not_found"));
            }
            if json {
                let rows: Vec<Value> = history
                    .iter()
                    .map(|(operation, entry)| {
                        let mut row = entry_json(entry);
                        row["operation"] = json!(operation_name(*operation));
                        row
                    })
                    .collect();
                print_json(&Value::Array(rows));
            } else {
                let mut table = Table::new(&["REVISION", "OPERATION", "CREATED", "VALUE"]);
                for (operation, entry) in &history {
                    table.row(vec![
                        entry.revision.to_string(),
                        operation_name(*operation).to_owned(),
                        entry.created.to_rfc3339(),
                        text(&entry.value),
                    ]);
                }
                print!("{}", table.render());
            }
        }
        Command::Watch(args) => watch(json, &client, args).await?,
    }
    Ok(())
}

async fn watch(json: bool, client: &Client, args: WatchArgs) -> CliResult {
    let store = existing(client, &args.bucket).await?;
    let target = if args.exact {
        WatchTarget::Key(args.prefix.clone())
    } else {
        WatchTarget::Prefix(args.prefix.clone())
    };
    let start = if args.new_only {
        WatchStart::NewOnly
    } else {
        WatchStart::CurrentValues
    };
    let mut changes = store.watch(target, start).await?;
    let stop = args.limits.stopped();
    tokio::pin!(stop);
    eprintln!("watching bucket {}; Ctrl-C to stop", args.bucket);
    let mut seen = 0;
    while !args.limits.reached(seen) {
        let change = tokio::select! {
            _ = &mut stop => break,
            change = changes.next() => match change {
                Some(change) => change,
                None => break,
            },
        };
        show_change(json, &change);
        seen += 1;
    }
    Ok(())
}

/// An existing bucket: reading, updating and deleting never create one.
async fn existing(client: &Client, bucket: &str) -> CliResult<Arc<dyn KvStore>> {
    let nats = client
        .nats()
        .ok_or_else(|| CliError::new("not connected to NATS"))?;
    Ok(Arc::new(NatsKvStore::open_existing(nats, bucket).await?))
}

/// The bucket to write to, created with `history` revisions per key if missing.
async fn writable(client: &Client, bucket: &str, history: u8) -> CliResult<Arc<dyn KvStore>> {
    let nats = client
        .nats()
        .ok_or_else(|| CliError::new("not connected to NATS"))?;
    let config = BucketConfig::new(bucket).history(history);
    Ok(Arc::new(NatsKvStore::open(nats, &config).await?))
}

/// The bytes to store: the argument itself, or all of stdin for `-`.
fn value_bytes(value: String) -> CliResult<Bytes> {
    if value != "-" {
        return Ok(Bytes::from(value.into_bytes()));
    }
    let mut buffer = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer)
        .map_err(|e| CliError::new(format!("cannot read the value from stdin: {e}")))?;
    Ok(Bytes::from(buffer))
}

fn written(json: bool, key: &KeyArgs, revision: u64) {
    if json {
        print_json(&json!({"bucket": key.bucket, "key": key.key, "revision": revision}));
    } else {
        println!("{} revision {revision}", key.key);
    }
}

/// A value for people: UTF-8 as it is, MessagePack as JSON, anything else by its size.
fn text(value: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(value) {
        return text.to_owned();
    }
    match codec::decode::<Value>(value) {
        Ok(decoded) => decoded.to_string(),
        Err(_) => format!("<{} bytes>", value.len()),
    }
}

/// A value for scripts: JSON when it is JSON (or MessagePack), else a string.
fn value_json(value: &[u8]) -> Value {
    if value.is_empty() {
        return Value::Null;
    }
    codec::decode::<Value>(value).unwrap_or_else(|_| Value::String(text(value)))
}

fn entry_json(entry: &KvEntry) -> Value {
    json!({
        "key": entry.key,
        "revision": entry.revision,
        "created": entry.created.to_rfc3339(),
        "value": value_json(&entry.value),
    })
}

fn operation_name(operation: KvOperation) -> &'static str {
    match operation {
        KvOperation::Put => "put",
        KvOperation::Delete => "delete",
        KvOperation::Purge => "purge",
        KvOperation::Expired => "expired",
        _ => "other",
    }
}

fn show_change(json: bool, change: &KvChange) {
    if json {
        print_json(&json!({
            "key": change.key,
            "revision": change.revision,
            "operation": operation_name(change.operation),
            "created": change.created.to_rfc3339(),
            "value": value_json(&change.value),
        }));
    } else {
        let value = match change.operation {
            KvOperation::Put => text(&change.value),
            _ => String::new(),
        };
        println!(
            "{} {} {} #{} {value}",
            change.created.to_rfc3339(),
            operation_name(change.operation),
            change.key,
            change.revision
        );
    }
}
