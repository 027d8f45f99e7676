//! The KV store: put, get, update with a revision check, watch a prefix, delete. The
//! same steps as the Python SDK's `kv_example.py`; exits by itself.
//!
//! ```text
//! nats-server -js &
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p aegis-examples --example kv_example
//! ```
//!
//! Keys such as `user:123` are not valid NATS keys (`:` is not allowed), so they go
//! through `encode_key` (`user=3A123`) and back through `decode_key`.

use std::time::Duration;

use aegis_sdk::application::kv::Kv;
use aegis_sdk::domain::kv_key::{decode_key, encode_key};
use aegis_sdk::ports::kv::{BucketConfig, KvOperation};
use aegis_sdk::{Client, ConnectOptions, ErrorKind};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_login: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aegis_examples::finish(run().await)
}

async fn run() -> aegis_examples::Result {
    aegis_examples::init_tracing();
    let client = Client::connect(&ConnectOptions::new(aegis_examples::nats_url())).await?;
    let kv = Kv::open(&client, BucketConfig::new("user-data").history(5)).await?;

    // Store user data.
    let key = encode_key("user:123")?;
    let user = User {
        name: "John Doe".into(),
        email: Some("john@example.com".into()),
        last_login: None,
    };
    let revision = kv.put(&key, &user).await?;
    tracing::info!(key = %decode_key(&key)?, revision, "stored user");

    // Retrieve it.
    if let Some(entry) = kv.get::<User>(&key).await? {
        tracing::info!(value = ?entry.value, revision = entry.revision, "retrieved user");
    }

    // Update with a revision check; a stale revision is refused.
    let updated = User {
        last_login: Some("2024-01-01T12:00:00Z".into()),
        ..user
    };
    let new_revision = kv.update(&key, &updated, revision).await?;
    tracing::info!(new_revision, "updated user");
    match kv.update(&key, &updated, revision).await {
        Err(error) if error.kind() == ErrorKind::RevisionMismatch => {
            tracing::info!("a second update with the old revision was refused, as it should be");
        }
        other => return Err(format!("expected a revision mismatch, got {other:?}").into()),
    }

    // Watch the prefix, only for new changes, while making three of them.
    let prefix = encode_key("user:")?;
    let mut watch = kv
        .store()
        .watch(
            aegis_sdk::ports::kv::WatchTarget::Prefix(prefix),
            aegis_sdk::ports::kv::WatchStart::NewOnly,
        )
        .await?;
    let jane = encode_key("user:124")?;
    let bob = encode_key("user:125")?;
    kv.put(
        &jane,
        &User {
            name: "Jane Doe".into(),
            email: None,
            last_login: None,
        },
    )
    .await?;
    kv.put(
        &bob,
        &User {
            name: "Bob Smith".into(),
            email: None,
            last_login: None,
        },
    )
    .await?;
    kv.delete(&bob).await?;

    for _ in 0..3 {
        let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await?
            .ok_or("watch ended")?;
        let value = match change.operation {
            KvOperation::Put => Some(Kv::decode::<User>(&change.value)?),
            _ => None,
        };
        tracing::info!(
            operation = ?change.operation,
            key = %decode_key(&change.key)?,
            revision = change.revision,
            ?value,
            "change detected"
        );
    }

    // Clean up.
    for key in [&key, &jane] {
        kv.delete(key).await?;
    }
    tracing::info!(keys = ?kv.keys("").await?, "done; live keys left");
    Ok(())
}
