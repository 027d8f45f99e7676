//! The KV port: a bucket of keys with revisions, compare-and-set, per-key TTL and
//! watches.
//!
//! Values are bytes here; [`crate::application::kv::Kv`] adds typed (serde) values on
//! top. Keys follow the NATS key alphabet (see [`crate::domain::kv_key`]); every method
//! checks its keys first and returns [`ErrorKind::InvalidName`](crate::ErrorKind) for an
//! invalid one, without touching the wire.
//!
//! Failures common to every method: [`ErrorKind::InvalidName`] for an invalid key or
//! prefix, [`ErrorKind::Timeout`] when the server does not answer in time,
//! [`ErrorKind::Connection`] when the connection is down, [`ErrorKind::Storage`] for
//! anything else the server refuses.
//!
//! [`ErrorKind::InvalidName`]: crate::ErrorKind::InvalidName
//! [`ErrorKind::Timeout`]: crate::ErrorKind::Timeout
//! [`ErrorKind::Connection`]: crate::ErrorKind::Connection
//! [`ErrorKind::Storage`]: crate::ErrorKind::Storage

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

use crate::error::Result;

/// The current value of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The revision of this value: the bucket-wide sequence number of the write.
    pub revision: u64,
    /// When the value was written.
    pub created: DateTime<Utc>,
}

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KvOperation {
    /// A value was written.
    Put,
    /// The key was deleted (its history is kept).
    Delete,
    /// The key was purged (its history is gone).
    Purge,
    /// The key's time-to-live ran out and the server removed it.
    Expired,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvChange {
    /// The key that changed.
    pub key: String,
    /// The revision of the change; strictly increasing along one watch.
    pub revision: u64,
    /// What happened.
    pub operation: KvOperation,
    /// The new value for [`KvOperation::Put`]; empty otherwise.
    pub value: Bytes,
    /// When the change was written.
    pub created: DateTime<Utc>,
    /// How many further changes the server still had to deliver when this one left it;
    /// `0` means the watch had caught up with the bucket at that moment.
    pub pending: u64,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WatchStart {
    /// First the latest change of every matching key (a deleted key shows as its
    /// delete), then every change. The default.
    #[default]
    CurrentValues,
    /// Only changes made after the watch started.
    NewOnly,
}

/// What a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    /// One key.
    Key(String),
    /// Every key that starts with this string (`""` for the whole bucket). Need not end
    /// on a token boundary: `service-instances__orders__` works.
    Prefix(String),
}

/// A bucket's configuration, used when the bucket has to be created. An existing bucket
/// is opened as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// The bucket name (`[a-zA-Z0-9_-]+`).
    pub name: String,
    /// Revisions kept per key, 1 to 64 (default 1).
    pub history: u8,
    /// Largest write accepted, in bytes; `None` (the default) for the server's limit
    /// (its `max_payload`). As on the server, the limit counts the headers a write
    /// carries with its value (`NATS/1.0\r\n`, a `Name: value\r\n` line per header
    /// and `\r\n`): none on a plain put, 26 bytes for a TTL of 1 to 9 s alone
    /// (`Nats-TTL: 5s`), 52 for an expected revision of 0 alone (one byte more per
    /// digit; create, update, and conditional delete and purge carry one), 31 on a
    /// delete marker and 51 on a purge marker. A write over the limit fails with
    /// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge).
    pub max_value_size: Option<u32>,
    /// Copies kept in a cluster (default 1).
    pub replicas: usize,
    /// Where values live (default [`StorageKind::File`]).
    pub storage: StorageKind,
    /// Enables per-key TTL and expiry notices. The value is how long the expiry marker a
    /// watcher sees is kept, in whole seconds (at least 1 s, a fraction is dropped;
    /// default 1 s). In a bucket keeping more than one revision per key (`history` > 1)
    /// the server raises any shorter per-key TTL to this time, so keep it short; with
    /// `history` 1 a key's TTL applies as given. `None` disables per-key TTL. At most
    /// [`MAX_KEY_TTL`] (longer is taken as that).
    pub expiry_markers: Option<Duration>,
    /// A description for people.
    pub description: String,
}

/// The longest time-to-live a key, a lease or an expiry marker is given: about 100
/// years. A longer one (up to `Duration::MAX`) is treated as this; a server could not
/// take it (it counts nanoseconds in 64 bits).
pub const MAX_KEY_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `ttl` in the whole seconds a server takes: rounded up, at most [`MAX_KEY_TTL`].
pub(crate) fn ttl_whole_seconds(ttl: Duration) -> u64 {
    let ttl = ttl.min(MAX_KEY_TTL);
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

impl BucketConfig {
    /// The default configuration for a bucket called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        BucketConfig {
            name: name.into(),
            history: 1,
            max_value_size: None,
            replicas: 1,
            storage: StorageKind::File,
            expiry_markers: Some(Duration::from_secs(1)),
            description: String::new(),
        }
    }

    /// Sets the number of revisions kept per key.
    pub fn history(mut self, history: u8) -> Self {
        self.history = history;
        self
    }

    /// Sets the largest write accepted, headers included (see
    /// [`max_value_size`](Self::max_value_size)).
    pub fn max_value_size(mut self, bytes: u32) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// Sets the number of replicas.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets the storage kind.
    pub fn storage(mut self, storage: StorageKind) -> Self {
        self.storage = storage;
        self
    }

    /// Sets how long expiry markers are kept, or disables per-key TTL with `None`.
    pub fn expiry_markers(mut self, keep: Option<Duration>) -> Self {
        self.expiry_markers = keep;
        self
    }
}

/// Where a bucket keeps its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageKind {
    /// On disk; survives a server restart. The default.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// A bucket's configuration and size as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStatus {
    /// The bucket name.
    pub bucket: String,
    /// Messages stored (values, delete markers and history).
    pub values: u64,
    /// Bytes stored, by the backend's own accounting: on NATS the stream's stored
    /// message bytes (subjects, headers and per-message overhead included), in memory
    /// the keys and values of the records kept. Useful to watch one bucket grow on one
    /// backend; not comparable across backends.
    pub bytes: u64,
    /// Revisions kept per key.
    pub history: i64,
    /// Largest value accepted; negative for no limit of its own.
    pub max_value_size: i32,
    /// Replicas.
    pub replicas: usize,
    /// Storage kind.
    pub storage: StorageKind,
    /// Whether per-key TTL is enabled.
    pub ttl_enabled: bool,
    /// The revision of the bucket's latest write (0 when it never had one).
    pub last_revision: u64,
}

/// A running watch: a stream of [`KvChange`]s in revision order.
///
/// The stream does not end by itself: across server restarts and reconnects it resumes
/// from the last revision it delivered, so nothing is missed and nothing repeated, even
/// when the reader was not reading at the time. Dropping it stops the watch.
pub struct KvWatch {
    changes: Pin<Box<dyn Stream<Item = KvChange> + Send>>,
    current_at_start: bool,
}

impl KvWatch {
    /// Wraps a stream of changes. `current_at_start` says whether there was nothing to
    /// deliver when the watch began (an empty bucket, or [`WatchStart::NewOnly`]).
    pub fn new(
        changes: impl Stream<Item = KvChange> + Send + 'static,
        current_at_start: bool,
    ) -> Self {
        KvWatch {
            changes: Box::pin(changes),
            current_at_start,
        }
    }

    /// Whether the watch had nothing to catch up with when it began. If false, the first
    /// change with [`KvChange::pending`] `== 0` marks the end of the current values.
    pub fn current_at_start(&self) -> bool {
        self.current_at_start
    }
}

impl fmt::Debug for KvWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvWatch")
            .field("current_at_start", &self.current_at_start)
            .finish_non_exhaustive()
    }
}

impl Stream for KvWatch {
    type Item = KvChange;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<KvChange>> {
        self.changes.as_mut().poll_next(cx)
    }
}

/// A KV bucket.
///
/// Time-to-live values are whole seconds of at least 1 s (a fraction is rounded up);
/// a shorter one is [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument),
/// as is any TTL on a bucket without per-key TTL.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The bucket name.
    fn bucket(&self) -> &str;

    /// The current value of `key`, or `None` when it does not exist, was deleted or
    /// expired.
    async fn get(&self, key: &str) -> Result<Option<KvEntry>>;

    /// Writes `value` under `key`, expiring after `ttl` if given. Returns the revision.
    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64>;

    /// Writes `value` only if `key` has no live value (never written, deleted, purged or
    /// expired). Returns the revision.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) when the key is live.
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64>;

    /// Writes `value` only if the key's latest revision is `expected_revision`, as one
    /// atomic compare-and-set. Returns the new revision. An `expected_revision` of 0
    /// matches a key that was never written.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) otherwise.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
        ttl: Option<Duration>,
    ) -> Result<u64>;

    /// Deletes `key` (keeping its history), if its latest revision is
    /// `expected_revision` when one is given.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when the
    /// revision differs.
    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()>;

    /// Purges `key` and its history, if its latest revision is `expected_revision` when
    /// one is given.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when the
    /// revision differs.
    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()>;

    /// The live keys starting with `prefix` (`""` for all), sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>>;

    /// The live entries whose keys start with `prefix`, sorted by key.
    async fn entries(&self, prefix: &str) -> Result<Vec<KvEntry>>;

    /// Up to `limit` revisions of `key`, newest first, including deletes and purges as
    /// entries with empty values.
    async fn history(&self, key: &str, limit: usize) -> Result<Vec<(KvOperation, KvEntry)>>;

    /// [`get`](KvStore::get) for many keys at once, in the order given.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KvEntry>>>;

    /// [`put`](KvStore::put) for many keys at once; returns the revisions in the order
    /// given. Not atomic: on an error, some writes may have happened.
    async fn put_many(
        &self,
        entries: Vec<(String, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<Vec<u64>>;

    /// [`delete`](KvStore::delete) for many keys at once. Not atomic.
    async fn delete_many(&self, keys: &[String]) -> Result<()>;

    /// The bucket's status as the server reports it now.
    async fn status(&self) -> Result<KvStatus>;

    /// Watches `target`.
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> Result<KvWatch>;
}
