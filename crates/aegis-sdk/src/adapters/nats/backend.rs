//! [`Backend`] over a NATS connection: JetStream streams, work queue and KV buckets.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    NatsCommandQueue, NatsCommandStore, NatsEventBus, NatsKvStore, NatsLeaseStore, NatsTransport,
};
use crate::domain::election::GroupName;
use crate::domain::ServiceName;
use crate::error::Result;
use crate::ports::commands::{CommandQueue, CommandStatusStore};
use crate::ports::election::LeaseStore;
use crate::ports::events::EventBus;
use crate::ports::kv::{BucketConfig, KvStore};
use crate::ports::Backend;

/// The NATS adapters of one connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsBackend {
    transport: NatsTransport,
}

impl NatsBackend {
    /// The adapters of `transport`'s connection.
    pub fn new(transport: NatsTransport) -> Self {
        NatsBackend { transport }
    }
}

#[async_trait]
impl Backend for NatsBackend {
    fn event_bus(&self, max_in_flight: Option<usize>) -> Arc<dyn EventBus> {
        Arc::new(match max_in_flight {
            Some(limit) => NatsEventBus::with_max_in_flight(&self.transport, limit),
            None => NatsEventBus::new(&self.transport),
        })
    }

    fn command_queue(&self) -> Arc<dyn CommandQueue> {
        Arc::new(NatsCommandQueue::new(&self.transport))
    }

    fn command_store(&self) -> Arc<dyn CommandStatusStore> {
        Arc::new(NatsCommandStore::new(&self.transport))
    }

    async fn kv_store(&self, config: &BucketConfig) -> Result<Arc<dyn KvStore>> {
        Ok(Arc::new(NatsKvStore::open(&self.transport, config).await?))
    }

    async fn lease_store(
        &self,
        service: &ServiceName,
        group: &GroupName,
    ) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(
            NatsLeaseStore::open(&self.transport, service, group).await?,
        ))
    }
}
