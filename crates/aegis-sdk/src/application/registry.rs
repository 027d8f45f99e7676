//! The service registry: reading and writing instance entries in bucket
//! `service_registry` (see [`crate::domain::instance`] for the layout).
//!
//! [`ServiceRegistry`] is the data access; [`Registration`](super::registration) is the
//! component that keeps one service instance registered while it runs.

use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::kv::Kv;
use crate::domain::instance::{instance_key, service_prefix, ServiceInstance, REGISTRY_BUCKET};
use crate::domain::{InstanceId, ServiceName};
use crate::error::Result;
use crate::ports::kv::{BucketConfig, KvStore, KvWatch, WatchStart, WatchTarget};

/// The prefix of every instance key, whatever the service.
pub const INSTANCE_KEY_PREFIX: &str = "service-instances__";

/// Reads and writes registry entries. Cheap to clone.
#[derive(Clone)]
pub struct ServiceRegistry {
    store: Arc<dyn KvStore>,
}

impl std::fmt::Debug for ServiceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRegistry")
            .field("bucket", &self.store.bucket())
            .finish()
    }
}

impl ServiceRegistry {
    /// Opens bucket `service_registry` on the client's backend, creating it (with
    /// per-key TTL and expiry notices) when missing.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when the client
    /// has no backend; [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the bucket
    /// cannot be opened or created.
    pub async fn open(client: &Client) -> Result<Self> {
        let backend = client.require_backend("the service registry")?;
        let config = BucketConfig::new(REGISTRY_BUCKET).history(1);
        Ok(ServiceRegistry::new(super::metrics::metered(
            backend.kv_store(&config).await?,
        )))
    }

    /// A registry over any store.
    pub fn new(store: Arc<dyn KvStore>) -> Self {
        ServiceRegistry { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// Whether entries can carry a server-side TTL (a bucket created by another SDK may
    /// not allow it; entries then only go stale).
    pub async fn ttl_enabled(&self) -> Result<bool> {
        Ok(self.store.status().await?.ttl_enabled)
    }

    /// Writes `entry`, to expire after `ttl` if given. Returns the revision.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName) when the entry's service
    /// or instance is not a valid name; store errors otherwise.
    pub async fn register(&self, entry: &ServiceInstance, ttl: Option<Duration>) -> Result<u64> {
        let key = instance_key(
            &ServiceName::new(entry.service_name.as_str())?,
            &InstanceId::new(entry.instance_id.as_str())?,
        );
        self.store.put(&key, Kv::encode(entry)?, ttl).await
    }

    /// Removes an instance's entry.
    pub async fn deregister(&self, service: &ServiceName, instance: &InstanceId) -> Result<()> {
        self.store
            .delete(&instance_key(service, instance), None)
            .await
    }

    /// One instance's entry, if it is registered.
    pub async fn get(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
    ) -> Result<Option<ServiceInstance>> {
        match self.store.get(&instance_key(service, instance)).await? {
            Some(entry) => Kv::decode(&entry.value).map(Some),
            None => Ok(None),
        }
    }

    /// Every registered instance of `service`, by instance id. Entries that cannot be
    /// read are skipped (and logged).
    pub async fn list(&self, service: &ServiceName) -> Result<Vec<ServiceInstance>> {
        self.list_prefix(&service_prefix(service)).await
    }

    /// Every registered instance of every service.
    pub async fn list_all(&self) -> Result<Vec<ServiceInstance>> {
        self.list_prefix(INSTANCE_KEY_PREFIX).await
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ServiceInstance>> {
        let entries = self.store.entries(prefix).await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| match Kv::decode::<ServiceInstance>(&entry.value) {
                Ok(instance) => Some(instance),
                Err(error) => {
                    tracing::debug!(key = %entry.key, %error, "unreadable registry entry skipped");
                    None
                }
            })
            .collect())
    }

    /// Watches every instance entry, current ones first.
    pub async fn watch(&self) -> Result<KvWatch> {
        self.store
            .watch(
                WatchTarget::Prefix(INSTANCE_KEY_PREFIX.to_owned()),
                WatchStart::CurrentValues,
            )
            .await
    }
}
