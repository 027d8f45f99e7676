//! [`KvStore`] over a NATS JetStream KV bucket.
//!
//! Reads go through async-nats' KV store (direct gets); writes are published here with
//! the KV headers themselves, because async-nats has no TTL on `put` and drops the TTL
//! when `create` re-creates a deleted key. Listings and watches run on ordered consumers
//! of their own (see the `kv_watch` module), which also tell an expiry apart from a purge.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::try_join_all;

use super::headers::to_nats;
use super::kv_watch;
use super::transport::NatsTransport;
use crate::adapters::kv_wire::{check_size, write_headers};
use crate::domain::kv_key::{validate_bucket, validate_key, validate_prefix};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::kv::{
    BucketConfig, KvEntry, KvOperation, KvStatus, KvStore, KvWatch, StorageKind, WatchStart,
    WatchTarget, MAX_KEY_TTL,
};
use crate::ports::Headers;

/// A KV bucket on a NATS server. Cheap to clone; clones share the bucket handle.
#[derive(Clone)]
pub struct NatsKvStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) transport: NatsTransport,
    pub(super) client: async_nats::Client,
    pub(super) context: async_nats::jetstream::Context,
    pub(super) store: kv::Store,
    pub(super) bucket: String,
    /// `$KV.{bucket}.`: the subject prefix of every key.
    pub(super) prefix: String,
    ttl_enabled: bool,
    /// The bucket's own largest message (value and headers), if it has one.
    max_message: Option<usize>,
}

impl std::fmt::Debug for NatsKvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsKvStore")
            .field("bucket", &self.inner.bucket)
            .field("ttl_enabled", &self.inner.ttl_enabled)
            .finish_non_exhaustive()
    }
}

impl NatsKvStore {
    /// Opens the bucket `config.name`, creating it with `config` when it does not exist.
    /// An existing bucket is used as it is, whatever its configuration.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an invalid bucket name;
    /// [`ErrorKind::InvalidArgument`] for a history outside 1..=64 or an expiry marker
    /// shorter than 1 s; [`ErrorKind::Storage`] when the server refuses the bucket.
    pub async fn open(transport: &NatsTransport, config: &BucketConfig) -> Result<Self> {
        validate_bucket(&config.name)?;
        if !(1..=64).contains(&config.history) {
            return Err(Error::invalid_argument("bucket history must be 1 to 64"));
        }
        if config
            .expiry_markers
            .is_some_and(|keep| keep < Duration::from_secs(1))
        {
            return Err(Error::invalid_argument(
                "expiry markers must be kept at least 1 s",
            ));
        }
        let client = transport.client().clone();
        let context = async_nats::jetstream::new(client.clone());

        if let Ok(store) = context.get_key_value(&config.name).await {
            return Ok(Self::from_store(transport, client, context, store));
        }
        let created = context
            .create_key_value(kv::Config {
                bucket: config.name.clone(),
                description: config.description.clone(),
                history: i64::from(config.history),
                max_value_size: config
                    .max_value_size
                    .map_or(-1, |size| i32::try_from(size).unwrap_or(i32::MAX)),
                num_replicas: config.replicas.max(1),
                storage: match config.storage {
                    StorageKind::File => async_nats::jetstream::stream::StorageType::File,
                    StorageKind::Memory => async_nats::jetstream::stream::StorageType::Memory,
                },
                limit_markers: config.expiry_markers.map(|keep| keep.min(MAX_KEY_TTL)),
                ..Default::default()
            })
            .await;
        match created {
            Ok(store) => {
                tracing::debug!(bucket = %config.name, "created KV bucket");
                Ok(Self::from_store(transport, client, context, store))
            }
            // Somebody else may have created it in the meantime.
            Err(create_error) => match context.get_key_value(&config.name).await {
                Ok(store) => Ok(Self::from_store(transport, client, context, store)),
                Err(_) => Err(Error::new(
                    ErrorKind::Storage,
                    format!("cannot create KV bucket {}: {create_error}", config.name),
                )
                .with_source(create_error)),
            },
        }
    }

    /// Opens an existing bucket without creating it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an invalid name; [`ErrorKind::NotFound`] when the
    /// bucket does not exist (or the server cannot be asked).
    pub async fn open_existing(transport: &NatsTransport, bucket: &str) -> Result<Self> {
        validate_bucket(bucket)?;
        let client = transport.client().clone();
        let context = async_nats::jetstream::new(client.clone());
        let store = context.get_key_value(bucket).await.map_err(|e| {
            Error::new(ErrorKind::NotFound, format!("no KV bucket {bucket}: {e}")).with_source(e)
        })?;
        Ok(Self::from_store(transport, client, context, store))
    }

    fn from_store(
        transport: &NatsTransport,
        client: async_nats::Client,
        context: async_nats::jetstream::Context,
        store: kv::Store,
    ) -> Self {
        let config = &store.stream.cached_info().config;
        let ttl_enabled = config.allow_message_ttl;
        let max_message = usize::try_from(config.max_message_size).ok();
        NatsKvStore {
            inner: Arc::new(Inner {
                transport: transport.clone(),
                client,
                context,
                bucket: store.name.clone(),
                prefix: store.put_prefix.clone().unwrap_or(store.prefix.clone()),
                ttl_enabled,
                max_message,
                store,
            }),
        }
    }

    /// The TTL as sent: whole seconds, rounded up.
    fn ttl_seconds(&self, ttl: Option<Duration>) -> Result<Option<u64>> {
        let Some(ttl) = ttl else { return Ok(None) };
        if ttl < Duration::from_secs(1) {
            return Err(Error::invalid_argument(format!(
                "a key TTL must be at least 1 s, not {ttl:?}"
            )));
        }
        if !self.inner.ttl_enabled {
            return Err(Error::invalid_argument(format!(
                "bucket {} was created without per-key TTL",
                self.inner.bucket
            )));
        }
        Ok(Some(crate::ports::kv::ttl_whole_seconds(ttl)))
    }

    /// Publishes one write to `key` and waits for the server's ack; returns its revision.
    ///
    /// A write whose value and headers exceed the bucket's limit (or the connection's
    /// max payload) is refused here, as the server would refuse it.
    async fn write(&self, key: &str, headers: Headers, value: Bytes) -> Result<u64> {
        let max_payload = self.inner.client.max_payload();
        let limit = self
            .inner
            .max_message
            .map_or(max_payload, |max| max.min(max_payload));
        check_size(key, &headers, &value, limit)?;
        let subject = format!("{}{}", self.inner.prefix, key);
        let ack = self
            .inner
            .context
            .publish_with_headers(subject, to_nats(&headers)?.unwrap_or_default(), value)
            .await
            .map_err(|e| self.publish_error(key, e))?;
        let ack = ack.await.map_err(|e| self.publish_error(key, e))?;
        Ok(ack.sequence)
    }

    fn publish_error(&self, key: &str, error: PublishError) -> Error {
        let kind = match error.kind() {
            PublishErrorKind::WrongLastSequence => ErrorKind::RevisionMismatch,
            PublishErrorKind::TimedOut => ErrorKind::Timeout,
            PublishErrorKind::BrokenPipe => ErrorKind::Connection,
            PublishErrorKind::MaxPayloadExceeded => ErrorKind::PayloadTooLarge,
            // The bucket's own max value size, enforced by the server.
            _ if server_error_code(&error)
                == Some(async_nats::jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) =>
            {
                ErrorKind::PayloadTooLarge
            }
            _ => self.failure_kind(),
        };
        Error::new(kind, format!("write of key {key} failed: {error}")).with_source(error)
    }

    /// The kind for a failure async-nats does not classify: a lost connection, or the
    /// server's refusal.
    pub(super) fn failure_kind(&self) -> ErrorKind {
        match self.inner.client.connection_state() {
            async_nats::connection::State::Connected => ErrorKind::Storage,
            _ => ErrorKind::Connection,
        }
    }

    /// The latest record of `key`, whatever its operation.
    async fn latest(&self, key: &str) -> Result<Option<(KvOperation, KvEntry)>> {
        let entry = self.inner.store.entry(key).await.map_err(|e| {
            let kind = match e.kind() {
                kv::EntryErrorKind::TimedOut => ErrorKind::Timeout,
                kv::EntryErrorKind::InvalidKey => ErrorKind::InvalidName,
                kv::EntryErrorKind::Other => self.failure_kind(),
            };
            Error::new(kind, format!("get of key {key} failed: {e}")).with_source(e)
        })?;
        Ok(entry.map(|entry| {
            let operation = match entry.operation {
                kv::Operation::Put => KvOperation::Put,
                kv::Operation::Delete => KvOperation::Delete,
                kv::Operation::Purge => KvOperation::Purge,
            };
            let entry = KvEntry {
                key: entry.key,
                value: entry.value,
                revision: entry.revision,
                created: kv_watch::to_chrono(entry.created),
            };
            (operation, entry)
        }))
    }
}

#[async_trait]
impl KvStore for NatsKvStore {
    fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        validate_key(key)?;
        Ok(match self.latest(key).await? {
            Some((KvOperation::Put, entry)) => Some(entry),
            _ => None,
        })
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        validate_key(key)?;
        let headers = write_headers(KvOperation::Put, None, self.ttl_seconds(ttl)?);
        self.write(key, headers, value).await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        validate_key(key)?;

        // Expect "no message for this subject" first; most creates are of new keys.
        match self.update(key, value.clone(), 0, ttl).await {
            Err(e) if e.kind() == ErrorKind::RevisionMismatch => {}
            other => return other,
        }

        // The key has a history: only a delete, purge or expiry marker may be replaced,
        // and only that very revision, so a concurrent create still loses.
        match self.latest(key).await? {
            Some((KvOperation::Put, _)) => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("key {key} exists"),
            )),
            Some((_, tombstone)) => self
                .update(key, value, tombstone.revision, ttl)
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::RevisionMismatch => Error::new(
                        ErrorKind::AlreadyExists,
                        format!("key {key} was created concurrently"),
                    ),
                    _ => e,
                }),
            // Expired without a marker between the two requests.
            None => self
                .update(key, value, 0, ttl)
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::RevisionMismatch => {
                        Error::new(ErrorKind::AlreadyExists, format!("key {key} exists"))
                    }
                    _ => e,
                }),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        validate_key(key)?;
        let headers = write_headers(
            KvOperation::Put,
            Some(expected_revision),
            self.ttl_seconds(ttl)?,
        );
        self.write(key, headers, value).await
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        validate_key(key)?;
        let headers = write_headers(KvOperation::Delete, expected_revision, None);
        self.write(key, headers, Bytes::new()).await.map(drop)
    }

    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        validate_key(key)?;
        let headers = write_headers(KvOperation::Purge, expected_revision, None);
        self.write(key, headers, Bytes::new()).await.map(drop)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        let latest = kv_watch::latest_per_key(self, prefix, true).await?;
        Ok(latest
            .into_iter()
            .filter(|change| change.operation == KvOperation::Put)
            .map(|change| change.key)
            .collect())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<KvEntry>> {
        validate_prefix(prefix)?;
        let latest = kv_watch::latest_per_key(self, prefix, false).await?;
        Ok(latest
            .into_iter()
            .filter(|change| change.operation == KvOperation::Put)
            .map(|change| KvEntry {
                key: change.key,
                value: change.value,
                revision: change.revision,
                created: change.created,
            })
            .collect())
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<(KvOperation, KvEntry)>> {
        validate_key(key)?;
        let mut changes = kv_watch::all_changes(self, key).await?;
        changes.reverse();
        changes.truncate(limit);
        Ok(changes
            .into_iter()
            .map(|change| {
                (
                    change.operation,
                    KvEntry {
                        key: change.key,
                        value: change.value,
                        revision: change.revision,
                        created: change.created,
                    },
                )
            })
            .collect())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KvEntry>>> {
        for key in keys {
            validate_key(key)?;
        }
        try_join_all(keys.iter().map(|key| self.get(key))).await
    }

    async fn put_many(
        &self,
        entries: Vec<(String, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<Vec<u64>> {
        for (key, _) in &entries {
            validate_key(key)?;
        }
        try_join_all(
            entries
                .into_iter()
                .map(|(key, value)| async move { self.put(&key, value, ttl).await }),
        )
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            validate_key(key)?;
        }
        try_join_all(keys.iter().map(|key| self.delete(key, None)))
            .await
            .map(drop)
    }

    async fn status(&self) -> Result<KvStatus> {
        let info = self.inner.store.stream.get_info().await.map_err(|e| {
            Error::new(
                self.failure_kind(),
                format!("status of bucket {} failed: {e}", self.inner.bucket),
            )
            .with_source(e)
        })?;
        Ok(KvStatus {
            bucket: self.inner.bucket.clone(),
            values: info.state.messages,
            bytes: info.state.bytes,
            history: info.config.max_messages_per_subject,
            max_value_size: info.config.max_message_size,
            replicas: info.config.num_replicas,
            storage: match info.config.storage {
                async_nats::jetstream::stream::StorageType::Memory => StorageKind::Memory,
                _ => StorageKind::File,
            },
            ttl_enabled: info.config.allow_message_ttl,
            last_revision: info.state.last_sequence,
        })
    }

    async fn watch(&self, target: WatchTarget, start: WatchStart) -> Result<KvWatch> {
        match &target {
            WatchTarget::Key(key) => validate_key(key)?,
            WatchTarget::Prefix(prefix) => validate_prefix(prefix)?,
        }
        kv_watch::watch(self.clone(), target, start).await
    }
}

/// The JetStream error code behind a failed publish, if the server sent one.
fn server_error_code(error: &PublishError) -> Option<async_nats::jetstream::ErrorCode> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(server) = cause.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(server.error_code());
        }
        source = cause.source();
    }
    None
}
