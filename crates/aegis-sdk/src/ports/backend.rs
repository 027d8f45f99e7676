//! The backend port: where a client gets the adapters of every capability beside core
//! messaging (events, commands, KV, election).
//!
//! A [`Client`](crate::Client) holds one backend next to its [`Transport`](super::Transport).
//! [`Client::connect`](crate::Client::connect) gives it the NATS backend (JetStream, KV);
//! the `testing` feature's `MemoryBackend` gives it in-memory adapters. Services, event
//! subscriptions, command workers, the registry and leader election ask the client's
//! backend for their adapters and never name a technology.

use std::sync::Arc;

use async_trait::async_trait;

use super::commands::{CommandQueue, CommandStatusStore};
use super::election::LeaseStore;
use super::events::EventBus;
use super::kv::{BucketConfig, KvStore};
use crate::domain::election::GroupName;
use crate::domain::ServiceName;
use crate::error::Result;

/// Makes the adapters of one connection. Cheap calls: adapters hold handles on the
/// connection, not connections of their own.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The durable event streams, with at most `max_in_flight` publishes awaiting their
    /// acknowledgement at once (`None`: the adapter's default).
    fn event_bus(&self, max_in_flight: Option<usize>) -> Arc<dyn EventBus>;

    /// The command work queue.
    fn command_queue(&self) -> Arc<dyn CommandQueue>;

    /// The store of command status records.
    fn command_store(&self) -> Arc<dyn CommandStatusStore>;

    /// Opens the bucket `config.name`, creating it with `config` when missing; an
    /// existing bucket is used as it is.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName) for an invalid bucket
    /// name; [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a
    /// history outside 1..=64 or an expiry marker shorter than 1 s;
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the bucket cannot be made.
    async fn kv_store(&self, config: &BucketConfig) -> Result<Arc<dyn KvStore>>;

    /// The lease key of `service`'s single-active `group`.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when its bucket cannot be
    /// opened or created.
    async fn lease_store(
        &self,
        service: &ServiceName,
        group: &GroupName,
    ) -> Result<Arc<dyn LeaseStore>>;
}
