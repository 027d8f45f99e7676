//! The log of an in-memory KV bucket: every record still stored, by revision, with the
//! per-key index, the expiry queue and the watchers. Each operation of
//! [`MemoryKvStore`](super::MemoryKvStore) is one step on it, under the bucket's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ports::kv::{BucketConfig, KvChange, KvEntry, KvOperation, WatchTarget};

/// The records of one bucket.
#[derive(Default)]
pub(super) struct Log {
    pub(super) last_revision: u64,
    /// Every record still stored, by revision.
    pub(super) records: BTreeMap<u64, Record>,
    /// Each key's stored revisions, oldest first.
    pub(super) keys: BTreeMap<String, Vec<u64>>,
    pub(super) watchers: Vec<Watcher>,
    /// Records with a TTL, by expiry; entries whose record is gone are skipped.
    pub(super) expiries: BTreeSet<(Instant, u64)>,
}

/// One write: a value, a delete or purge marker, or an expiry marker.
#[derive(Clone)]
pub(super) struct Record {
    pub(super) key: String,
    pub(super) operation: KvOperation,
    pub(super) value: Bytes,
    pub(super) created: DateTime<Utc>,
    pub(super) expires: Option<Instant>,
}

/// A running watch: what it covers, and where its changes go.
pub(super) struct Watcher {
    pub(super) target: WatchTarget,
    pub(super) sender: mpsc::UnboundedSender<KvChange>,
}

impl Watcher {
    pub(super) fn wants(&self, key: &str) -> bool {
        match &self.target {
            WatchTarget::Key(wanted) => wanted == key,
            WatchTarget::Prefix(prefix) => key.starts_with(prefix.as_str()),
        }
    }
}

impl Record {
    pub(super) fn change(&self, revision: u64, pending: u64) -> KvChange {
        KvChange {
            key: self.key.clone(),
            revision,
            operation: self.operation,
            value: self.value.clone(),
            created: self.created,
            pending,
        }
    }

    pub(super) fn entry(&self, revision: u64) -> KvEntry {
        KvEntry {
            key: self.key.clone(),
            value: self.value.clone(),
            revision,
            created: self.created,
        }
    }
}

/// How long an expiry marker is kept, as the server keeps it: the bucket's marker time
/// in whole seconds (a fraction is dropped). `None` when per-key TTL is off.
pub(super) fn marker_ttl(config: &BucketConfig) -> Option<Duration> {
    config
        .expiry_markers
        .map(|keep| Duration::from_secs(keep.min(crate::ports::kv::MAX_KEY_TTL).as_secs()))
}

impl Log {
    pub(super) fn last_of(&self, key: &str) -> u64 {
        self.keys
            .get(key)
            .and_then(|revisions| revisions.last())
            .copied()
            .unwrap_or(0)
    }

    /// Stores `record` under the next revision, trims the key's history, and tells the
    /// watchers.
    pub(super) fn append(&mut self, config: &BucketConfig, record: Record) -> u64 {
        self.last_revision += 1;
        let revision = self.last_revision;
        let revisions = self.keys.entry(record.key.clone()).or_default();
        if record.operation == KvOperation::Purge {
            // A purge rolls the key up: its marker is all that is left.
            for old in revisions.drain(..) {
                self.records.remove(&old);
            }
        }
        revisions.push(revision);
        let excess = revisions.len().saturating_sub(usize::from(config.history));
        for old in revisions.drain(..excess) {
            self.records.remove(&old);
        }
        self.watchers.retain(|watcher| {
            !watcher.wants(&record.key) || watcher.sender.send(record.change(revision, 0)).is_ok()
        });
        if let Some(expires) = record.expires {
            self.expiries.insert((expires, revision));
        }
        self.records.insert(revision, record);
        revision
    }

    /// Removes every record whose TTL ran out by `now`, oldest first, leaving an expiry
    /// marker where a key's last record went.
    pub(super) fn expire(&mut self, config: &BucketConfig, now: Instant) {
        loop {
            let Some(&(expired_at, revision)) = self.expiries.first() else {
                return;
            };
            if expired_at > now {
                return;
            }
            self.expiries.pop_first();
            // Trimmed or purged since.
            let Some(record) = self.records.remove(&revision) else {
                continue;
            };
            let revisions = self.keys.entry(record.key.clone()).or_default();
            revisions.retain(|r| *r != revision);
            if !revisions.is_empty() {
                continue;
            }
            self.keys.remove(&record.key);
            // A value's expiry leaves a marker; a marker's own expiry leaves nothing.
            if let (KvOperation::Put, Some(keep)) = (record.operation, marker_ttl(config)) {
                self.append(
                    config,
                    Record {
                        key: record.key,
                        operation: KvOperation::Expired,
                        value: Bytes::new(),
                        created: Utc::now(),
                        expires: Some(expired_at + keep),
                    },
                );
            }
        }
    }
}
