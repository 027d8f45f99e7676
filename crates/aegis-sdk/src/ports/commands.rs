//! The command ports: a durable work queue shared by the workers of a command, and a
//! store of status records keyed by command id.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::Headers;
use crate::domain::command_status::CommandStatus;
use crate::domain::{MethodName, ServiceName};
use crate::error::Result;

/// A durable work queue of commands (the `COMMANDS` stream).
#[async_trait]
pub trait CommandQueue: Send + Sync + 'static {
    /// Stores a command on `subject`, deduplicated by `message_id`. Returns `true` when
    /// the queue already held a message with that id (nothing new was stored).
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the queue refuses it or
    /// does not exist in a usable form; [`ErrorKind::Connection`](crate::ErrorKind::Connection)
    /// when the server cannot be reached; [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge).
    async fn enqueue(
        &self,
        subject: String,
        message_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<bool>;

    /// The shared source of `command` of `service`: every worker that opens it takes
    /// commands from the same queue, so each command goes to one of them. `ack_wait` is
    /// used when the source is created; an existing one keeps its own.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when it cannot be created (the
    /// stream is not a work queue, another consumer overlaps its subject, ...).
    async fn source(
        &self,
        service: &ServiceName,
        command: &MethodName,
        ack_wait: Duration,
    ) -> Result<Arc<dyn CommandSource>>;

    /// Stores a dead letter on `subject` (under `dlq.commands.>`).
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) or
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection).
    async fn dead_letter(&self, subject: String, headers: Headers, payload: Bytes) -> Result<()>;
}

/// Where a worker pulls commands from.
#[async_trait]
pub trait CommandSource: Send + Sync + 'static {
    /// How long a delivered command may go unacknowledged before it is redelivered.
    fn ack_wait(&self) -> Duration;

    /// Asks for up to `max` commands; the stream yields them as they arrive and ends
    /// after `max` or when `expires` passed.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) or
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the request fails.
    async fn pull(
        &self,
        max: usize,
        expires: Duration,
    ) -> Result<BoxStream<'static, Result<Delivery>>>;
}

/// One delivered command.
pub struct Delivery {
    /// The subject it was published to.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// The encoded envelope.
    pub payload: Bytes,
    /// How many times it has been delivered, this time included (1 at first).
    pub delivered: u64,
    /// Its sequence number in the queue: the same for every redelivery, different for
    /// a second message with the same command id.
    pub sequence: u64,
    /// How to settle it.
    pub acker: Arc<dyn DeliveryAcker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("delivered", &self.delivered)
            .field("len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// Settles a [`Delivery`].
#[async_trait]
pub trait DeliveryAcker: Send + Sync + 'static {
    /// Done: remove it from the queue.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection).
    async fn ack(&self) -> Result<()>;

    /// Not done: deliver it again after `delay` (at once when `None`).
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection).
    async fn nak(&self, delay: Option<Duration>) -> Result<()>;

    /// Still working on it: restart its ack-wait clock.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection).
    async fn in_progress(&self) -> Result<()>;
}

/// A status record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct StatusEntry {
    /// The record.
    pub status: CommandStatus,
    /// Its revision, for [`CommandStatusStore::update`].
    pub revision: u64,
}

/// Status records of commands, keyed by command id (the `aegis_commands` KV bucket).
#[async_trait]
pub trait CommandStatusStore: Send + Sync + 'static {
    /// Stores a record for a new id; returns its revision.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) when the id has one.
    async fn create(&self, status: &CommandStatus) -> Result<u64>;

    /// The record of `id`, if there is one.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) for a record that is not a status;
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage).
    async fn get(&self, id: &str) -> Result<Option<StatusEntry>>;

    /// Replaces the record if it is still at `revision`; returns the new revision.
    ///
    /// # Errors
    /// [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch) when it moved on.
    async fn update(&self, status: &CommandStatus, revision: u64) -> Result<u64>;

    /// Writes the record whatever was there; returns the new revision.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage).
    async fn put(&self, status: &CommandStatus) -> Result<u64>;

    /// The record of `id` now (if any) and every later version of it.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage).
    async fn watch(&self, id: &str) -> Result<BoxStream<'static, Result<CommandStatus>>>;
}
