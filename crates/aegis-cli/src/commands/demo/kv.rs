//! KV: put, get, compare-and-set, a watch on a prefix, delete.

use std::time::Duration;

use aegis_sdk::application::kv::Kv;
use aegis_sdk::ports::kv::{BucketConfig, WatchStart, WatchTarget};
use aegis_sdk::ErrorKind;
use futures::StreamExt;
use serde_json::{json, Value};

use super::Narrator;
use crate::output::CliResult;
use crate::Global;

pub(super) async fn run(global: &Global, say: &Narrator) -> CliResult<Value> {
    say.step("kv: bucket demo-settings, a watch on prefix `feature.`, compare-and-set");
    let client = global.connect().await?;
    let kv = Kv::open(&client, BucketConfig::new("demo-settings").history(5)).await?;
    let mut watch = kv
        .store()
        .watch(WatchTarget::Prefix("feature.".into()), WatchStart::NewOnly)
        .await?;

    let revision = kv
        .put("feature.dark_mode", &json!({"enabled": false}))
        .await?;
    let updated = kv
        .update("feature.dark_mode", &json!({"enabled": true}), revision)
        .await?;
    let stale = kv
        .update("feature.dark_mode", &json!({"enabled": false}), revision)
        .await;
    let stale_refused = matches!(&stale, Err(e) if e.kind() == ErrorKind::RevisionMismatch);
    say.line(&format!(
        "put rev {revision}, update rev {updated}, stale update refused: {stale_refused}"
    ));
    let current = kv
        .get::<Value>("feature.dark_mode")
        .await?
        .map(|entry| entry.value);
    say.line(&format!(
        "get -> {}",
        current.clone().unwrap_or(Value::Null)
    ));
    kv.delete("feature.dark_mode").await?;

    let mut changes = Vec::new();
    while changes.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Some(change)) => {
                say.line(&format!(
                    "watch: {:?} {} rev {}",
                    change.operation, change.key, change.revision
                ));
                changes.push(format!("{:?}", change.operation));
            }
            _ => break,
        }
    }
    Ok(json!({
        "watched_changes": changes.len(),
        "operations": changes,
        "stale_update_refused": stale_refused,
        "value": current,
    }))
}
