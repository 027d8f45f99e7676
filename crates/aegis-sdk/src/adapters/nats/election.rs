//! [`LeaseStore`] over a NATS KV bucket with per-message TTL and limit markers.
//!
//! The bucket is created with `allow_msg_ttl` and subject delete markers, so a lease the
//! holder stops renewing is removed by the server after its TTL and watchers receive an
//! expiry marker. Writes are plain JetStream publishes with `Nats-TTL` and
//! `Nats-Expected-Last-Subject-Sequence` headers: async-nats' own `create_with_ttl` drops
//! the TTL when it re-creates a deleted key, and it has no update with a TTL.

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::NatsTransport;
use crate::domain::election::{bucket_name, leader_key, GroupName, LeaderRecord};
use crate::domain::ServiceName;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::election::{LeaseEntry, LeaseEvent, LeaseStore};

/// How long the server keeps an expiry marker (the shortest it accepts).
const MARKER_TTL: Duration = Duration::from_secs(1);

/// The leader key of one service and group in bucket `election_{service}`.
#[derive(Clone)]
pub struct NatsLeaseStore {
    context: jetstream::Context,
    kv: kv::Store,
    subject: String,
    key: String,
}

impl std::fmt::Debug for NatsLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLeaseStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn storage(what: &str, error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Storage, format!("{what}: {error}")).with_source(error)
}

fn ttl_header(ttl: Duration) -> String {
    // The server takes whole seconds, at least one; never shorten a lease.
    format!("{}s", crate::ports::kv::ttl_whole_seconds(ttl).max(1))
}

impl NatsLeaseStore {
    /// Opens (creating if needed) the election bucket of `service` and binds to the leader
    /// key of `group`. An existing bucket without per-message TTL gets it switched on
    /// (that only adds to the stream's configuration).
    ///
    /// # Errors
    /// [`ErrorKind::Storage`] when the bucket cannot be created or updated.
    pub async fn open(
        transport: &NatsTransport,
        service: &ServiceName,
        group: &GroupName,
    ) -> Result<Self> {
        let context = jetstream::new(transport.client().clone());
        let bucket = bucket_name(service);
        let kv = match context.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                let config = kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    limit_markers: Some(MARKER_TTL),
                    ..Default::default()
                };
                match context.create_key_value(config).await {
                    Ok(kv) => kv,
                    // Another instance may have created it meanwhile.
                    Err(create) => context
                        .get_key_value(&bucket)
                        .await
                        .map_err(|_| storage("cannot create election bucket", create))?,
                }
            }
        };
        let info = kv
            .stream
            .get_info()
            .await
            .map_err(|e| storage("cannot read election bucket", e))?;
        if !info.config.allow_message_ttl {
            let config = stream::Config {
                allow_message_ttl: true,
                subject_delete_marker_ttl: Some(MARKER_TTL),
                ..info.config
            };
            context
                .update_stream(config)
                .await
                .map_err(|e| storage("cannot enable TTL on election bucket", e))?;
        }
        let key = leader_key(service, group);
        Ok(NatsLeaseStore {
            subject: format!("$KV.{bucket}.{key}"),
            context,
            kv,
            key,
        })
    }

    /// Publishes `payload` to the key if its last revision is `expected` (0: no message).
    async fn write(&self, payload: Vec<u8>, expected: u64, ttl: Duration) -> Result<u64> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string());
        headers.insert("Nats-TTL", ttl_header(ttl));
        let ack = self
            .context
            .publish_with_headers(self.subject.clone(), headers, payload.into())
            .await
            .map_err(map_publish)?
            .await
            .map_err(map_publish)?;
        Ok(ack.sequence)
    }
}

fn map_publish(error: PublishError) -> Error {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => {
            Error::new(ErrorKind::RevisionMismatch, "the lease changed meanwhile")
                .with_source(error)
        }
        PublishErrorKind::TimedOut => {
            Error::new(ErrorKind::Timeout, "lease write not acknowledged").with_source(error)
        }
        PublishErrorKind::BrokenPipe => Error::connection("lease write failed").with_source(error),
        _ => storage("lease write failed", error),
    }
}

fn entry_event(entry: kv::Entry) -> LeaseEvent {
    match entry.operation {
        Operation::Put => LeaseEvent::Put(LeaseEntry {
            revision: entry.revision,
            record: LeaderRecord::from_json(&entry.value).ok(),
        }),
        Operation::Delete | Operation::Purge => LeaseEvent::Gone {
            revision: entry.revision,
        },
    }
}

#[async_trait]
impl LeaseStore for NatsLeaseStore {
    async fn try_acquire(&self, record: &LeaderRecord, ttl: Duration) -> Result<u64> {
        let payload = record.to_json();
        match self.write(payload.clone(), 0, ttl).await {
            Err(e) if e.kind() == ErrorKind::RevisionMismatch => {}
            other => return other,
        }
        // The subject has messages: a live lease, or a delete or expiry marker on top.
        let entry = self
            .kv
            .entry(&self.key)
            .await
            .map_err(|e| storage("cannot read lease", e))?;
        let expected = match entry {
            Some(entry) if entry.operation == Operation::Put => {
                return Err(Error::new(ErrorKind::AlreadyExists, "the lease is held"))
            }
            Some(entry) => entry.revision,
            // The marker itself expired in between.
            None => 0,
        };
        self.write(payload, expected, ttl)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::RevisionMismatch => {
                    Error::new(ErrorKind::AlreadyExists, "the lease was taken meanwhile")
                }
                _ => e,
            })
    }

    async fn renew(&self, record: &LeaderRecord, revision: u64, ttl: Duration) -> Result<u64> {
        self.write(record.to_json(), revision, ttl).await
    }

    async fn release(&self, revision: u64) -> Result<()> {
        self.kv
            .delete_expect_revision(&self.key, Some(revision))
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => {
                    Error::new(ErrorKind::RevisionMismatch, "the lease changed meanwhile")
                        .with_source(e)
                }
                _ => storage("cannot release lease", e),
            })
    }

    async fn current(&self) -> Result<Option<LeaseEntry>> {
        let entry = self
            .kv
            .entry(&self.key)
            .await
            .map_err(|e| storage("cannot read lease", e))?;
        Ok(entry.and_then(|entry| match entry_event(entry) {
            LeaseEvent::Put(entry) => Some(entry),
            LeaseEvent::Gone { .. } => None,
        }))
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseEvent>>> {
        let watch = self
            .kv
            .watch_with_history(&self.key)
            .await
            .map_err(|e| storage("cannot watch lease", e))?;
        Ok(watch
            .map(|entry| {
                entry
                    .map(entry_event)
                    .map_err(|e| storage("lease watch failed", e))
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_header(Duration::from_millis(200)), "1s");
        assert_eq!(ttl_header(Duration::from_secs(2)), "2s");
        assert_eq!(ttl_header(Duration::from_millis(2100)), "3s");
    }
}
