//! [`MemoryBackend`]: one in-memory "server" — a message bus, streams and KV buckets —
//! and the clients connected to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::commands::{MemoryCommandQueue, MemoryCommandStore};
use super::election::MemoryLeaseStore;
use super::events::{MemoryEventBus, StoredMessage};
use super::kv::MemoryKvStore;
use super::stream::Streams;
use super::transport::MemoryTransport;
use crate::application::Client;
use crate::domain::command_status::STATUS_BUCKET;
use crate::domain::election::{bucket_name, leader_key, GroupName};
use crate::domain::kv_key::validate_bucket;
use crate::domain::ServiceName;
use crate::error::Result;
use crate::ports::commands::{CommandQueue, CommandStatusStore};
use crate::ports::election::LeaseStore;
use crate::ports::events::EventBus;
use crate::ports::kv::{BucketConfig, KvStore};
use crate::ports::Backend;

/// Everything a NATS server provides, in memory: core messaging (a
/// [`MemoryTransport`]), durable streams for events and commands, and KV buckets. Every
/// [`Client`] made by [`MemoryBackend::client`] is connected to it, as clients of one
/// server are. Cheap to clone; clones are the same server.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aegis_sdk::Result<()> {
/// use aegis_sdk::adapters::memory::MemoryBackend;
/// use aegis_sdk::application::kv::Kv;
/// use aegis_sdk::ports::kv::BucketConfig;
///
/// let server = MemoryBackend::new();
/// let (a, b) = (server.client(), server.client());
/// let kv = Kv::open(&a, BucketConfig::new("settings")).await?;
/// kv.put("theme", &"dark").await?;
/// let seen = Kv::open(&b, BucketConfig::new("settings")).await?;
/// assert_eq!(seen.get::<String>("theme").await?.unwrap().value, "dark");
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBackend {
    transport: MemoryTransport,
    streams: Streams,
    buckets: Arc<Mutex<HashMap<String, MemoryKvStore>>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// A new, empty server.
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    /// A new client connected to this server.
    pub fn client(&self) -> Client {
        Client::with_backend(Arc::new(self.transport.clone()), Arc::new(self.clone()))
    }

    /// The core message bus.
    pub fn transport(&self) -> &MemoryTransport {
        &self.transport
    }

    /// Every message still stored in stream `stream`, oldest first: `EVENTS` for the
    /// events published so far, `EVENTS_DLQ` and `COMMANDS_DLQ` for dead letters,
    /// `COMMANDS` for commands not yet done. Decode an event with
    /// [`Event::decode`](crate::domain::Event::decode).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when there is no such stream
    /// (nothing was published to it yet).
    pub fn messages(&self, stream: &str) -> Result<Vec<StoredMessage>> {
        Ok(self
            .streams
            .messages(stream)?
            .into_iter()
            .map(|message| StoredMessage {
                subject: message.subject,
                sequence: message.sequence,
                headers: message.headers,
                payload: message.payload,
            })
            .collect())
    }

    /// The bucket `config.name`, created with `config` when missing (an existing one is
    /// used as it is, as on a server).
    ///
    /// # Errors
    /// As [`MemoryKvStore::new`].
    pub fn bucket(&self, config: &BucketConfig) -> Result<MemoryKvStore> {
        validate_bucket(&config.name)?;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bucket) = buckets.get(&config.name) {
            return Ok(bucket.clone());
        }
        let bucket = MemoryKvStore::new(config)?;
        buckets.insert(config.name.clone(), bucket.clone());
        Ok(bucket)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn event_bus(&self, _max_in_flight: Option<usize>) -> Arc<dyn EventBus> {
        // Publishes are stored at once: nothing is ever in flight.
        Arc::new(MemoryEventBus::new(self.streams.clone()))
    }

    fn command_queue(&self) -> Arc<dyn CommandQueue> {
        Arc::new(MemoryCommandQueue::new(self.streams.clone()))
    }

    fn command_store(&self) -> Arc<dyn CommandStatusStore> {
        // As the NATS adapter creates it, less the day-long age limit.
        let bucket = self
            .bucket(&BucketConfig::new(STATUS_BUCKET).expiry_markers(None))
            .expect("the status bucket's name and configuration are valid");
        Arc::new(MemoryCommandStore::new(bucket))
    }

    async fn kv_store(&self, config: &BucketConfig) -> Result<Arc<dyn KvStore>> {
        Ok(Arc::new(self.bucket(config)?))
    }

    async fn lease_store(
        &self,
        service: &ServiceName,
        group: &GroupName,
    ) -> Result<Arc<dyn LeaseStore>> {
        let bucket = self.bucket(&BucketConfig::new(bucket_name(service)))?;
        Ok(Arc::new(MemoryLeaseStore::new(
            bucket,
            leader_key(service, group),
        )))
    }
}
