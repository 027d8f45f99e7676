//! [`CommandStatusStore`] over the NATS KV bucket `aegis_commands`: one JSON status
//! record per command id, kept for a day.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::{self, stream::StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::NatsTransport;
use crate::domain::command_status::{CommandStatus, STATUS_BUCKET};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::commands::{CommandStatusStore, StatusEntry};

/// How long status records are kept when this SDK creates the bucket.
const RECORD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

fn storage(
    what: String,
    e: impl std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::new(ErrorKind::Storage, format!("{what}: {e}")).with_source(e)
}

fn encode(status: &CommandStatus) -> Result<Bytes> {
    serde_json::to_vec(status)
        .map(Bytes::from)
        .map_err(|e| Error::new(ErrorKind::Encode, format!("command status: {e}")).with_source(e))
}

fn decode(bytes: &[u8]) -> Result<CommandStatus> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("invalid command status record: {e}"),
        )
        .with_source(e)
    })
}

/// The status bucket of one connection, opened (or created) on first use.
pub struct NatsCommandStore {
    js: jetstream::Context,
    store: OnceCell<kv::Store>,
}

impl NatsCommandStore {
    /// A store on `transport`'s connection.
    pub fn new(transport: &NatsTransport) -> Self {
        NatsCommandStore {
            js: jetstream::new(transport.client().clone()),
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&kv::Store> {
        self.store
            .get_or_try_init(|| async {
                if let Ok(store) = self.js.get_key_value(STATUS_BUCKET).await {
                    return Ok(store);
                }
                let config = kv::Config {
                    bucket: STATUS_BUCKET.to_owned(),
                    description: "aegis-sdk command status records".to_owned(),
                    history: 1,
                    max_age: RECORD_MAX_AGE,
                    storage: StorageType::File,
                    num_replicas: 1,
                    ..Default::default()
                };
                match self.js.create_key_value(config).await {
                    Ok(store) => Ok(store),
                    // Someone else may have created it meanwhile, with another config.
                    Err(create) => self.js.get_key_value(STATUS_BUCKET).await.map_err(|_| {
                        storage(format!("cannot create KV bucket {STATUS_BUCKET}"), create)
                    }),
                }
            })
            .await
    }
}

#[async_trait]
impl CommandStatusStore for NatsCommandStore {
    async fn create(&self, status: &CommandStatus) -> Result<u64> {
        let value = encode(status)?;
        let id = &status.command_id;
        self.store()
            .await?
            .create(id, value)
            .await
            .map_err(|e| match e.kind() {
                CreateErrorKind::AlreadyExists => Error::new(
                    ErrorKind::AlreadyExists,
                    format!("command {id} exists already"),
                ),
                _ => storage(format!("cannot create the status of command {id}"), e),
            })
    }

    async fn get(&self, id: &str) -> Result<Option<StatusEntry>> {
        let entry = self
            .store()
            .await?
            .entry(id)
            .await
            .map_err(|e| storage(format!("cannot read the status of command {id}"), e))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => Ok(Some(StatusEntry {
                status: decode(&entry.value)?,
                revision: entry.revision,
            })),
            _ => Ok(None),
        }
    }

    async fn update(&self, status: &CommandStatus, revision: u64) -> Result<u64> {
        let value = encode(status)?;
        let id = &status.command_id;
        self.store()
            .await?
            .update(id, value, revision)
            .await
            .map_err(|e| match e.kind() {
                UpdateErrorKind::WrongLastRevision => Error::new(
                    ErrorKind::RevisionMismatch,
                    format!("the status of command {id} moved past revision {revision}"),
                ),
                _ => storage(format!("cannot update the status of command {id}"), e),
            })
    }

    async fn put(&self, status: &CommandStatus) -> Result<u64> {
        let value = encode(status)?;
        let id = &status.command_id;
        self.store()
            .await?
            .put(id, value)
            .await
            .map_err(|e| storage(format!("cannot write the status of command {id}"), e))
    }

    async fn watch(&self, id: &str) -> Result<BoxStream<'static, Result<CommandStatus>>> {
        let watch = self
            .store()
            .await?
            .watch_with_history(id)
            .await
            .map_err(|e| storage(format!("cannot watch the status of command {id}"), e))?;
        Ok(watch
            .filter_map(|entry| async move {
                match entry {
                    Ok(entry) if entry.operation == Operation::Put => Some(decode(&entry.value)),
                    Ok(_) => None,
                    Err(e) => Some(Err(storage("status watch failed".to_owned(), e))),
                }
            })
            .boxed())
    }
}
