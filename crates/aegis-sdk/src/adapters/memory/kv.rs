//! [`KvStore`] in memory: a bucket kept as a log of writes, the way a NATS KV bucket is
//! a stream.
//!
//! Every write (put, delete, purge, expiry marker) gets the next bucket-wide revision
//! and is appended to the log; each key keeps at most `history` records. Per-key TTLs
//! run on tokio's clock, so a test with `tokio::time::pause()` decides when keys expire.
//! An expired record is removed; when it was the last record of its key, an expiry
//! marker takes its place (kept for the bucket's marker time, then removed silently), as
//! the NATS server does. Expiry is lazy: every operation first removes what is due, and
//! a watch wakes itself when the next expiry is due, so no background task is needed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::kv_log::{marker_ttl, Log, Record, Watcher};
use crate::adapters::kv_wire::{self, write_headers};
use crate::domain::kv_key::{validate_bucket, validate_key, validate_prefix};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::kv::{
    BucketConfig, KvChange, KvEntry, KvOperation, KvStatus, KvStore, KvWatch, WatchStart,
    WatchTarget,
};

/// The largest write (value and headers) any bucket accepts: a default server's
/// `max_payload`, 1 MiB.
const SERVER_MAX_PAYLOAD: usize = 1024 * 1024;

/// A KV bucket in memory. Cheap to clone; clones share the bucket.
#[derive(Clone)]
pub struct MemoryKvStore {
    inner: Arc<Bucket>,
}

struct Bucket {
    name: String,
    config: BucketConfig,
    state: Mutex<Log>,
}

impl std::fmt::Debug for MemoryKvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKvStore")
            .field("bucket", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl MemoryKvStore {
    /// A new, empty bucket with `config`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an invalid bucket name;
    /// [`ErrorKind::InvalidArgument`] for a history outside 1..=64 or an expiry marker
    /// time under 1 s (as the NATS adapter).
    pub fn new(config: &BucketConfig) -> Result<Self> {
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
        Ok(MemoryKvStore {
            inner: Arc::new(Bucket {
                name: config.name.clone(),
                config: config.clone(),
                state: Mutex::new(Log::default()),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // Every mutation completes before the guard drops; a panic cannot leave half.
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.expire(&self.inner.config, Instant::now());
        state
    }

    /// The TTL as the NATS adapter sends it: whole seconds, rounded up.
    fn ttl_seconds(&self, ttl: Option<Duration>) -> Result<Option<u64>> {
        let Some(ttl) = ttl else { return Ok(None) };
        if ttl < Duration::from_secs(1) {
            return Err(Error::invalid_argument(format!(
                "a key TTL must be at least 1 s, not {ttl:?}"
            )));
        }
        if self.inner.config.expiry_markers.is_none() {
            return Err(Error::invalid_argument(format!(
                "bucket {} was created without per-key TTL",
                self.inner.name
            )));
        }
        Ok(Some(crate::ports::kv::ttl_whole_seconds(ttl)))
    }

    /// The TTL as the server applies it: the seconds sent; in a bucket keeping more
    /// than one revision per key, at least the expiry markers' time (in whole seconds).
    fn applied_ttl(&self, seconds: Option<u64>) -> Option<Duration> {
        let ttl = Duration::from_secs(seconds?);
        match marker_ttl(&self.inner.config) {
            Some(keep) if self.inner.config.history > 1 => Some(ttl.max(keep)),
            _ => Some(ttl),
        }
    }

    /// Refuses a write whose value and headers (those the NATS adapter would send for
    /// it) exceed the bucket's limit, as the server does.
    fn check_size(
        &self,
        key: &str,
        operation: KvOperation,
        expected_revision: Option<u64>,
        ttl_seconds: Option<u64>,
        value: &Bytes,
    ) -> Result<()> {
        let limit = self
            .inner
            .config
            .max_value_size
            .map_or(SERVER_MAX_PAYLOAD, |size| {
                (size as usize).min(SERVER_MAX_PAYLOAD)
            });
        let headers = write_headers(operation, expected_revision, ttl_seconds);
        kv_wire::check_size(key, &headers, value, limit)
    }

    /// Appends one record for `key` if the key's last revision is `expected` (when
    /// given); returns its revision. As on the server, the size is checked first.
    fn write(
        &self,
        key: &str,
        operation: KvOperation,
        value: Bytes,
        expected: Option<u64>,
        ttl_seconds: Option<u64>,
    ) -> Result<u64> {
        self.check_size(key, operation, expected, ttl_seconds, &value)?;
        let ttl = self.applied_ttl(ttl_seconds);
        let mut state = self.lock();
        if let Some(expected) = expected {
            let last = state.last_of(key);
            if last != expected {
                return Err(Error::new(
                    ErrorKind::RevisionMismatch,
                    format!("write of key {key} failed: last revision is {last}, not {expected}"),
                ));
            }
        }
        Ok(state.append(
            &self.inner.config,
            Record {
                key: key.to_owned(),
                operation,
                value,
                created: Utc::now(),
                expires: ttl.map(crate::application::clock::after),
            },
        ))
    }

    /// When the next record expires, if any has a TTL.
    fn next_expiry(&self) -> Option<Instant> {
        self.lock().expiries.first().map(|(at, _)| *at)
    }

    fn latest(&self, key: &str) -> Option<(KvOperation, KvEntry)> {
        let state = self.lock();
        let revision = *state.keys.get(key)?.last()?;
        let record = &state.records[&revision];
        Some((record.operation, record.entry(revision)))
    }

    fn live(&self, prefix: &str) -> Vec<KvEntry> {
        let state = self.lock();
        state
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(_, revisions)| {
                let revision = *revisions.last()?;
                let record = &state.records[&revision];
                (record.operation == KvOperation::Put).then(|| record.entry(revision))
            })
            .collect()
    }
}

#[async_trait]
impl KvStore for MemoryKvStore {
    fn bucket(&self) -> &str {
        &self.inner.name
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        validate_key(key)?;
        Ok(match self.latest(key) {
            Some((KvOperation::Put, entry)) => Some(entry),
            _ => None,
        })
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        validate_key(key)?;
        let ttl = self.ttl_seconds(ttl)?;
        self.write(key, KvOperation::Put, value, None, ttl)
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        validate_key(key)?;
        let ttl_seconds = self.ttl_seconds(ttl)?;
        // The NATS adapter first writes expecting no record, then, over a delete, purge
        // or expiry marker, expecting that marker's revision: its headers grow with it.
        self.check_size(key, KvOperation::Put, Some(0), ttl_seconds, &value)?;
        let ttl = self.applied_ttl(ttl_seconds);

        // Check and write under one lock: a concurrent create loses.
        let mut state = self.lock();
        let last = state.last_of(key);
        if last != 0 && state.records[&last].operation == KvOperation::Put {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("key {key} exists"),
            ));
        }
        if last != 0 {
            self.check_size(key, KvOperation::Put, Some(last), ttl_seconds, &value)?;
        }
        Ok(state.append(
            &self.inner.config,
            Record {
                key: key.to_owned(),
                operation: KvOperation::Put,
                value,
                created: Utc::now(),
                expires: ttl.map(crate::application::clock::after),
            },
        ))
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        validate_key(key)?;
        let ttl = self.ttl_seconds(ttl)?;
        self.write(key, KvOperation::Put, value, Some(expected_revision), ttl)
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        validate_key(key)?;
        self.write(
            key,
            KvOperation::Delete,
            Bytes::new(),
            expected_revision,
            None,
        )
        .map(drop)
    }

    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        validate_key(key)?;
        self.write(
            key,
            KvOperation::Purge,
            Bytes::new(),
            expected_revision,
            None,
        )
        .map(drop)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        Ok(self
            .live(prefix)
            .into_iter()
            .map(|entry| entry.key)
            .collect())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<KvEntry>> {
        validate_prefix(prefix)?;
        Ok(self.live(prefix))
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<(KvOperation, KvEntry)>> {
        validate_key(key)?;
        let state = self.lock();
        let Some(revisions) = state.keys.get(key) else {
            return Ok(Vec::new());
        };
        Ok(revisions
            .iter()
            .rev()
            .take(limit)
            .map(|revision| {
                let record = &state.records[revision];
                (record.operation, record.entry(*revision))
            })
            .collect())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KvEntry>>> {
        for key in keys {
            validate_key(key)?;
        }
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            found.push(self.get(key).await?);
        }
        Ok(found)
    }

    async fn put_many(
        &self,
        entries: Vec<(String, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<Vec<u64>> {
        for (key, _) in &entries {
            validate_key(key)?;
        }
        let mut revisions = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            revisions.push(self.put(&key, value, ttl).await?);
        }
        Ok(revisions)
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            validate_key(key)?;
        }
        for key in keys {
            self.delete(key, None).await?;
        }
        Ok(())
    }

    async fn status(&self) -> Result<KvStatus> {
        let state = self.lock();
        let config = &self.inner.config;
        Ok(KvStatus {
            bucket: self.inner.name.clone(),
            values: state.records.len() as u64,
            bytes: state
                .records
                .values()
                .map(|record| (record.key.len() + record.value.len()) as u64)
                .sum(),
            history: i64::from(config.history),
            max_value_size: config
                .max_value_size
                .map_or(-1, |size| i32::try_from(size).unwrap_or(i32::MAX)),
            replicas: config.replicas.max(1),
            storage: config.storage,
            ttl_enabled: config.expiry_markers.is_some(),
            last_revision: state.last_revision,
        })
    }

    async fn watch(&self, target: WatchTarget, start: WatchStart) -> Result<KvWatch> {
        match &target {
            WatchTarget::Key(key) => validate_key(key)?,
            WatchTarget::Prefix(prefix) => validate_prefix(prefix)?,
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let watcher = Watcher { target, sender };

        // The current values and the registration under one lock: no write falls
        // between them.
        let mut state = self.lock();
        let mut current: Vec<(u64, &Record)> = match start {
            WatchStart::NewOnly => Vec::new(),
            WatchStart::CurrentValues => state
                .keys
                .iter()
                .filter(|(key, _)| watcher.wants(key))
                .filter_map(|(_, revisions)| revisions.last())
                .map(|revision| (*revision, &state.records[revision]))
                .collect(),
        };
        current.sort_by_key(|(revision, _)| *revision);
        let total = current.len() as u64;
        let initial: Vec<KvChange> = current
            .iter()
            .enumerate()
            .map(|(i, (revision, record))| record.change(*revision, total - 1 - i as u64))
            .collect();
        state.watchers.push(watcher);
        drop(state);

        // Expiries happen when someone looks. A watcher looks by itself when the next
        // one is due, so it hears of it even if nobody else touches the bucket; the
        // expiry runs on the watcher's own runtime and clock.
        let current_at_start = initial.is_empty();
        let store = self.clone();
        let live = futures::stream::unfold((receiver, store), |(mut receiver, store)| async move {
            loop {
                let change = match store.next_expiry() {
                    Some(at) => tokio::select! {
                        change = receiver.recv() => change,
                        _ = tokio::time::sleep_until(at) => {
                            drop(store.lock());
                            continue;
                        }
                    },
                    None => receiver.recv().await,
                };
                return change.map(|change| (change, (receiver, store)));
            }
        });
        Ok(KvWatch::new(
            futures::stream::iter(initial).chain(live),
            current_at_start,
        ))
    }
}
