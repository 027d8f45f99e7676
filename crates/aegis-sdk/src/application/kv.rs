//! Typed KV: serde values (JSON) over any [`KvStore`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::Client;
use crate::domain::Encoding;
use crate::error::{Error, Result};
use crate::ports::kv::{
    BucketConfig, KvEntry, KvOperation, KvStatus, KvStore, KvWatch, WatchStart, WatchTarget,
};

/// A value read from the store, with its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its revision, for [`Kv::update`].
    pub revision: u64,
    /// When it was written.
    pub created: DateTime<Utc>,
}

/// A KV bucket holding serde values, encoded as JSON (what the Python SDK stores) unless
/// told otherwise with [`Kv::with_encoding`].
///
/// Cheap to clone. The byte-level operations are on [`Kv::store`].
///
/// # Examples
/// ```no_run
/// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
/// use aegis_sdk::application::kv::Kv;
/// use aegis_sdk::ports::kv::BucketConfig;
/// use serde_json::json;
///
/// let kv = Kv::open(&client, BucketConfig::new("settings")).await?;
/// let revision = kv.put("theme", &json!({"dark": true})).await?;
/// kv.update("theme", &json!({"dark": false}), revision).await?;
/// let theme = kv.get::<serde_json::Value>("theme").await?.unwrap();
/// assert_eq!(theme.value["dark"], false);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Kv {
    store: Arc<dyn KvStore>,
    encoding: Encoding,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("bucket", &self.store.bucket())
            .finish()
    }
}

impl Kv {
    /// Opens (creating when missing) the bucket `config.name` on the client's backend
    /// (NATS KV, or in memory in tests). Its operations show in the
    /// [metrics](super::metrics) (see [`metered`](super::metrics::metered) for a store of
    /// your own).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when the client
    /// has no backend; see [`Backend::kv_store`](crate::ports::Backend::kv_store) for the
    /// rest.
    pub async fn open(client: &Client, config: BucketConfig) -> Result<Kv> {
        let backend = client.require_backend("KV buckets")?;
        Ok(Kv::new(super::metrics::metered(
            backend.kv_store(&config).await?,
        )))
    }

    /// A typed view of any store.
    pub fn new(store: Arc<dyn KvStore>) -> Kv {
        Kv {
            store,
            encoding: Encoding::Json,
        }
    }

    /// The same bucket with values in `encoding` (default JSON, which Python peers
    /// read; MessagePack is smaller).
    pub fn with_encoding(&self, encoding: Encoding) -> Kv {
        Kv {
            store: self.store.clone(),
            encoding,
        }
    }

    /// The encoding of values.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The byte-level store underneath.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// Encodes a value as JSON (the default encoding; see [`Kv::encode_value`]).
    ///
    /// # Errors
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) when serde fails.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| Error::encode(format!("cannot encode KV value: {e}")).with_source(e))
    }

    /// Decodes a JSON value (the default encoding; see [`Kv::decode_value`]).
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) when the bytes are not a JSON `T`.
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::decode(format!("cannot decode KV value: {e}")).with_source(e))
    }

    /// Encodes a value with this bucket's encoding.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) when serde fails.
    pub fn encode_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        match self.encoding {
            Encoding::Json => Self::encode(value),
            other => other.encode(value).map(Bytes::from),
        }
    }

    /// Decodes a value (from a [`KvEntry`] or a watched change) with this bucket's
    /// encoding.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) when the bytes are not a `T`.
    pub fn decode_value<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        match self.encoding {
            Encoding::MessagePack => rmp_serde::from_slice(bytes)
                .map_err(|e| Error::decode(format!("cannot decode KV value: {e}")).with_source(e)),
            _ => Self::decode(bytes),
        }
    }

    fn versioned<T: DeserializeOwned>(&self, entry: KvEntry) -> Result<Versioned<T>> {
        Ok(Versioned {
            value: self.decode_value(&entry.value)?,
            revision: entry.revision,
            created: entry.created,
        })
    }

    /// The value of `key`, or `None` when it does not exist (or was deleted or expired).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        self.store
            .get(key)
            .await?
            .map(|e| self.versioned(e))
            .transpose()
    }

    /// Writes `value`; returns the revision.
    pub async fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<u64> {
        self.store.put(key, self.encode_value(value)?, None).await
    }

    /// Writes `value`, to expire after `ttl` (at least 1 s).
    pub async fn put_with_ttl<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<u64> {
        self.store
            .put(key, self.encode_value(value)?, Some(ttl))
            .await
    }

    /// Writes `value` only if `key` has no live value, to expire after `ttl` if given.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) when it has.
    pub async fn create<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.store.create(key, self.encode_value(value)?, ttl).await
    }

    /// Writes `value` only if the key is still at `revision`. Revision 0 means "the key
    /// has never been written" (as in NATS KV), so it creates a key that does not exist.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when it is not.
    pub async fn update<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<u64> {
        self.store
            .update(key, self.encode_value(value)?, revision, None)
            .await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.store.delete(key, None).await
    }

    /// Deletes `key` only if it is still at `revision`.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when it is not.
    pub async fn delete_if(&self, key: &str, revision: u64) -> Result<()> {
        self.store.delete(key, Some(revision)).await
    }

    /// Purges `key` and its history.
    pub async fn purge(&self, key: &str) -> Result<()> {
        self.store.purge(key, None).await
    }

    /// The live keys starting with `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.store.keys(prefix).await
    }

    /// Up to `limit` values of `key`, newest first; deletes and purges are left out.
    pub async fn history<T: DeserializeOwned>(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>> {
        self.store
            .history(key, limit)
            .await?
            .into_iter()
            .filter(|(operation, _)| *operation == KvOperation::Put)
            .map(|(_, entry)| self.versioned(entry))
            .collect()
    }

    /// The bucket's status.
    pub async fn status(&self) -> Result<KvStatus> {
        self.store.status().await
    }

    /// Watches every key starting with `prefix`, current values first.
    pub async fn watch_prefix(&self, prefix: &str) -> Result<KvWatch> {
        self.store
            .watch(
                WatchTarget::Prefix(prefix.to_owned()),
                WatchStart::CurrentValues,
            )
            .await
    }

    /// Watches one key, current value first.
    pub async fn watch_key(&self, key: &str) -> Result<KvWatch> {
        self.store
            .watch(WatchTarget::Key(key.to_owned()), WatchStart::CurrentValues)
            .await
    }
}
