//! [`LeaseStore`] in memory: the leader key in an in-memory KV bucket with per-key TTL,
//! laid out as the NATS adapter lays it out (bucket `election_{service}`, key
//! `sticky-active.{service}.{group}.leader`).

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::kv::MemoryKvStore;
use crate::domain::election::LeaderRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::election::{LeaseEntry, LeaseEvent, LeaseStore};
use crate::ports::kv::{KvOperation, KvStore, WatchStart, WatchTarget};

/// One lease key in an in-memory bucket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MemoryLeaseStore {
    bucket: MemoryKvStore,
    key: String,
}

impl MemoryLeaseStore {
    /// The lease `key` in `bucket`, which must have per-key TTL (expiry markers).
    pub fn new(bucket: MemoryKvStore, key: impl Into<String>) -> Self {
        MemoryLeaseStore {
            bucket,
            key: key.into(),
        }
    }
}

/// Whole seconds, at least one, never shorter than asked: as the NATS adapter.
fn whole_seconds(ttl: Duration) -> Duration {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn try_acquire(&self, record: &LeaderRecord, ttl: Duration) -> Result<u64> {
        self.bucket
            .create(&self.key, record.to_json().into(), Some(whole_seconds(ttl)))
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => {
                    Error::new(ErrorKind::AlreadyExists, "the lease is held")
                }
                _ => e,
            })
    }

    async fn renew(&self, record: &LeaderRecord, revision: u64, ttl: Duration) -> Result<u64> {
        self.bucket
            .update(
                &self.key,
                record.to_json().into(),
                revision,
                Some(whole_seconds(ttl)),
            )
            .await
    }

    async fn release(&self, revision: u64) -> Result<()> {
        self.bucket.delete(&self.key, Some(revision)).await
    }

    async fn current(&self) -> Result<Option<LeaseEntry>> {
        Ok(self.bucket.get(&self.key).await?.map(|entry| LeaseEntry {
            revision: entry.revision,
            record: LeaderRecord::from_json(&entry.value).ok(),
        }))
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseEvent>>> {
        let watch = self
            .bucket
            .watch(
                WatchTarget::Key(self.key.clone()),
                WatchStart::CurrentValues,
            )
            .await?;
        Ok(watch
            .map(|change| {
                Ok(match change.operation {
                    KvOperation::Put => LeaseEvent::Put(LeaseEntry {
                        revision: change.revision,
                        record: LeaderRecord::from_json(&change.value).ok(),
                    }),
                    _ => LeaseEvent::Gone {
                        revision: change.revision,
                    },
                })
            })
            .boxed())
    }
}
