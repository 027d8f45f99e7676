//! The port leader election needs: one lease key with atomic create, revision-checked
//! renewal and release, a server-side expiry, and a watch.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::domain::election::LeaderRecord;
use crate::error::Result;

/// The lease key as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseEntry {
    /// The revision of the last write; only grows.
    pub revision: u64,
    /// The holder's record (`None` when the stored value is not a valid record).
    pub record: Option<LeaderRecord>,
}

/// A change of the lease key, as seen by a watcher.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LeaseEvent {
    /// Someone wrote the key: a new term or a renewal.
    Put(LeaseEntry),
    /// The key is gone: released (deleted or purged) or expired by the server.
    Gone {
        /// The revision of the delete, purge or expiry marker.
        revision: u64,
    },
}

/// One lease key (one service and group) in a store that expires writes by itself.
///
/// The TTL of every write is a whole number of seconds, at least 1 s; adapters round up.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates the key with `record`, atomically: succeeds only if the key does not exist
    /// (never written, released or expired). Returns the new revision.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) when someone holds
    /// the lease; [`ErrorKind::Storage`](crate::ErrorKind::Storage) or
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when the store fails.
    async fn try_acquire(&self, record: &LeaderRecord, ttl: Duration) -> Result<u64>;

    /// Writes `record` only if the key's last revision is still `revision`, with a fresh
    /// TTL. Used both to renew one's own lease and to take over a lease whose holder
    /// stopped renewing. Returns the new revision.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when the key
    /// changed since `revision`; `Storage` or `Connection` when the store fails.
    async fn renew(&self, record: &LeaderRecord, revision: u64, ttl: Duration) -> Result<u64>;

    /// Deletes the key only if its last revision is still `revision`.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when the key
    /// changed since; `Storage` or `Connection` when the store fails.
    async fn release(&self, revision: u64) -> Result<()>;

    /// The key now; `None` when it does not exist.
    ///
    /// # Errors
    /// `Storage` or `Connection` when the store fails.
    async fn current(&self) -> Result<Option<LeaseEntry>>;

    /// The key's current state (if it exists) followed by every later change, in order.
    /// The stream ends or yields an error when the watch breaks.
    ///
    /// # Errors
    /// `Storage` or `Connection` when the watch cannot be set up.
    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseEvent>>>;
}
