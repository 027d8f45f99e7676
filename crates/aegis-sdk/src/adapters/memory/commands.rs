//! The command ports in memory: the `COMMANDS` work queue on the in-memory
//! in-memory streams, and status records in an in-memory KV bucket
//! `aegis_commands`, laid out as the NATS adapters lay them out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::time::Instant;

use super::consumer::{ConsumerConfig, Settlement};
use super::kv::MemoryKvStore;
use super::stream::{StreamConfig, Streams};
use crate::domain::command_status::{self as cs, consumer_name, CommandStatus};
use crate::domain::{subjects, MethodName, ServiceName};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::commands::{
    CommandQueue, CommandSource, CommandStatusStore, Delivery, DeliveryAcker, StatusEntry,
};
use crate::ports::events::{Retention, StartAt};
use crate::ports::kv::{KvOperation, KvStore, WatchStart, WatchTarget};
use crate::ports::Headers;

/// Max messages of `COMMANDS` (as the NATS adapter creates it).
const STREAM_MAX_MESSAGES: u64 = 10_000;
/// How long dead letters are kept.
const DLQ_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a message id is remembered to drop a duplicate (a server's default).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Deliveries a consumer may have unacknowledged (as the NATS adapter).
const MAX_ACK_PENDING: usize = 10_000;

/// The command work queue in memory. Cheap to clone.
#[derive(Clone)]
pub struct MemoryCommandQueue {
    streams: Streams,
}

impl std::fmt::Debug for MemoryCommandQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCommandQueue").finish_non_exhaustive()
    }
}

impl MemoryCommandQueue {
    pub(crate) fn new(streams: Streams) -> Self {
        MemoryCommandQueue { streams }
    }

    /// `COMMANDS` (created when missing); one that is not a work queue cannot serve.
    fn ensure_stream(&self) -> Result<()> {
        let state = match self.streams.stream(cs::STREAM) {
            Ok(state) => state,
            Err(e) if e.kind() == ErrorKind::NotFound => self.streams.create(StreamConfig {
                name: cs::STREAM.to_owned(),
                subjects: vec![cs::STREAM_SUBJECTS.to_owned()],
                retention: Retention::WorkQueue,
                max_messages: Some(STREAM_MAX_MESSAGES),
                max_age: None,
                duplicate_window: DUPLICATE_WINDOW,
            })?,
            Err(e) => return Err(e),
        };
        if state.retention != Retention::WorkQueue {
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "stream COMMANDS exists with {:?} retention; commands need work-queue \
                     retention",
                    state.retention
                ),
            ));
        }
        Ok(())
    }

    fn ensure_dlq(&self) -> Result<()> {
        match self.streams.stream(cs::DLQ_STREAM) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => self
                .streams
                .create(StreamConfig {
                    name: cs::DLQ_STREAM.to_owned(),
                    subjects: vec![cs::DLQ_SUBJECTS.to_owned()],
                    retention: Retention::Limits,
                    max_messages: None,
                    max_age: Some(DLQ_MAX_AGE),
                    duplicate_window: DUPLICATE_WINDOW,
                })
                .map(drop),
            Err(e) => Err(e),
        }
    }

    fn store(&self, subject: String, headers: Headers, payload: Bytes) -> Result<bool> {
        Streams::check_size(&subject, &headers, &payload)?;
        let id = headers.get(cs::HEADER_MSG_ID).map(str::to_owned);
        let receipt = self
            .streams
            .publish(subject, headers, payload, id.as_deref())
            .map_err(|e| Error::new(ErrorKind::Storage, e.message().to_owned()))?;
        Ok(receipt.duplicate)
    }
}

#[async_trait]
impl CommandQueue for MemoryCommandQueue {
    async fn enqueue(
        &self,
        subject: String,
        message_id: &str,
        mut headers: Headers,
        payload: Bytes,
    ) -> Result<bool> {
        self.ensure_stream()?;
        headers.insert(cs::HEADER_MSG_ID, message_id);
        self.store(subject, headers, payload)
    }

    async fn source(
        &self,
        service: &ServiceName,
        command: &MethodName,
        ack_wait: Duration,
    ) -> Result<Arc<dyn CommandSource>> {
        self.ensure_stream()?;
        let name = consumer_name(service.as_str(), command.as_str());
        let wanted = ConsumerConfig {
            filter: subjects::command(service, command),
            start: StartAt::First,
            ack_wait,
            max_ack_pending: MAX_ACK_PENDING,
            inactive_threshold: None,
        };
        let config = self.streams.consumer(cs::STREAM, &name, &wanted)?;
        Ok(Arc::new(MemoryCommandSource {
            streams: self.streams.clone(),
            name,
            config,
        }))
    }

    async fn dead_letter(&self, subject: String, headers: Headers, payload: Bytes) -> Result<()> {
        self.ensure_dlq()?;
        self.store(subject, headers, payload).map(drop)
    }
}

struct MemoryCommandSource {
    streams: Streams,
    name: String,
    config: ConsumerConfig,
}

#[async_trait]
impl CommandSource for MemoryCommandSource {
    fn ack_wait(&self) -> Duration {
        self.config.ack_wait
    }

    async fn pull(
        &self,
        max: usize,
        expires: Duration,
    ) -> Result<BoxStream<'static, Result<Delivery>>> {
        let deadline = Instant::now() + expires;
        let streams = self.streams.clone();
        let name = self.name.clone();
        let config = self.config.clone();
        let state = (streams, name, config, max);
        Ok(
            futures::stream::unfold(state, move |(streams, name, config, left)| async move {
                if left == 0 {
                    return None;
                }
                let taken = streams
                    .next(cs::STREAM, &name, &config, Some(deadline))
                    .await?;
                let delivery = Delivery {
                    subject: taken.subject,
                    headers: taken.headers,
                    payload: taken.payload,
                    delivered: taken.delivered,
                    sequence: taken.sequence,
                    acker: Arc::new(MemoryCommandAcker {
                        streams: streams.clone(),
                        consumer: name.clone(),
                        sequence: taken.sequence,
                    }),
                };
                Some((Ok(delivery), (streams, name, config, left - 1)))
            })
            .boxed(),
        )
    }
}

struct MemoryCommandAcker {
    streams: Streams,
    consumer: String,
    sequence: u64,
}

impl MemoryCommandAcker {
    fn settle(&self, how: Settlement) -> Result<()> {
        self.streams
            .settle(cs::STREAM, &self.consumer, self.sequence, how);
        Ok(())
    }
}

#[async_trait]
impl DeliveryAcker for MemoryCommandAcker {
    async fn ack(&self) -> Result<()> {
        self.settle(Settlement::Ack)
    }

    async fn nak(&self, delay: Option<Duration>) -> Result<()> {
        self.settle(Settlement::Nak(delay.unwrap_or_default()))
    }

    async fn in_progress(&self) -> Result<()> {
        self.settle(Settlement::InProgress)
    }
}

/// Command status records in an in-memory KV bucket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MemoryCommandStore {
    bucket: MemoryKvStore,
}

impl MemoryCommandStore {
    /// Records kept in `bucket` (one JSON record per command id).
    pub fn new(bucket: MemoryKvStore) -> Self {
        MemoryCommandStore { bucket }
    }
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

#[async_trait]
impl CommandStatusStore for MemoryCommandStore {
    async fn create(&self, status: &CommandStatus) -> Result<u64> {
        let id = &status.command_id;
        self.bucket
            .create(id, encode(status)?, None)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => Error::new(
                    ErrorKind::AlreadyExists,
                    format!("command {id} exists already"),
                ),
                _ => e,
            })
    }

    async fn get(&self, id: &str) -> Result<Option<StatusEntry>> {
        match self.bucket.get(id).await? {
            Some(entry) => Ok(Some(StatusEntry {
                status: decode(&entry.value)?,
                revision: entry.revision,
            })),
            None => Ok(None),
        }
    }

    async fn update(&self, status: &CommandStatus, revision: u64) -> Result<u64> {
        self.bucket
            .update(&status.command_id, encode(status)?, revision, None)
            .await
    }

    async fn put(&self, status: &CommandStatus) -> Result<u64> {
        self.bucket
            .put(&status.command_id, encode(status)?, None)
            .await
    }

    async fn watch(&self, id: &str) -> Result<BoxStream<'static, Result<CommandStatus>>> {
        let watch = self
            .bucket
            .watch(WatchTarget::Key(id.to_owned()), WatchStart::CurrentValues)
            .await?;
        Ok(watch
            .filter_map(|change| async move {
                (change.operation == KvOperation::Put).then(|| decode(&change.value))
            })
            .boxed())
    }
}
