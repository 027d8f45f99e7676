//! A [`KvStore`] that counts and times every operation of the store it wraps.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{timed, OpKind};
use crate::error::Result;
use crate::ports::kv::{KvEntry, KvOperation, KvStatus, KvStore, KvWatch, WatchStart, WatchTarget};

/// Wraps `store` so that its operations show in the metrics as
/// `aegis_kv_operations_total{bucket, operation, outcome}` and
/// `aegis_kv_operation_duration_seconds{bucket, operation}` while metrics are on.
pub fn metered(store: Arc<dyn KvStore>) -> Arc<dyn KvStore> {
    Arc::new(MeteredKv { inner: store })
}

struct MeteredKv {
    inner: Arc<dyn KvStore>,
}

impl MeteredKv {
    fn labels<'a>(&'a self, operation: &'a str) -> [&'a str; 2] {
        [self.inner.bucket(), operation]
    }
}

#[async_trait]
impl KvStore for MeteredKv {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        timed(OpKind::Kv, &self.labels("get"), self.inner.get(key)).await
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        timed(
            OpKind::Kv,
            &self.labels("put"),
            self.inner.put(key, value, ttl),
        )
        .await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        let work = self.inner.create(key, value, ttl);
        timed(OpKind::Kv, &self.labels("create"), work).await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        let work = self.inner.update(key, value, expected_revision, ttl);
        timed(OpKind::Kv, &self.labels("update"), work).await
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        let work = self.inner.delete(key, expected_revision);
        timed(OpKind::Kv, &self.labels("delete"), work).await
    }

    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        let work = self.inner.purge(key, expected_revision);
        timed(OpKind::Kv, &self.labels("purge"), work).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        timed(OpKind::Kv, &self.labels("keys"), self.inner.keys(prefix)).await
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<KvEntry>> {
        timed(
            OpKind::Kv,
            &self.labels("entries"),
            self.inner.entries(prefix),
        )
        .await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<(KvOperation, KvEntry)>> {
        let work = self.inner.history(key, limit);
        timed(OpKind::Kv, &self.labels("history"), work).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KvEntry>>> {
        timed(
            OpKind::Kv,
            &self.labels("get_many"),
            self.inner.get_many(keys),
        )
        .await
    }

    async fn put_many(
        &self,
        entries: Vec<(String, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<Vec<u64>> {
        let work = self.inner.put_many(entries, ttl);
        timed(OpKind::Kv, &self.labels("put_many"), work).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let work = self.inner.delete_many(keys);
        timed(OpKind::Kv, &self.labels("delete_many"), work).await
    }

    async fn status(&self) -> Result<KvStatus> {
        timed(OpKind::Kv, &self.labels("status"), self.inner.status()).await
    }

    async fn watch(&self, target: WatchTarget, start: WatchStart) -> Result<KvWatch> {
        let work = self.inner.watch(target, start);
        timed(OpKind::Kv, &self.labels("watch"), work).await
    }
}
