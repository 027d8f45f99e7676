//! The durable-messaging port behind events: streams, publishing with acknowledgement,
//! and consumers that deliver each message until it is acknowledged.
//!
//! The application layer decides names, subjects and policies; an adapter (JetStream)
//! only carries them out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::transport::Headers;
use crate::error::Result;

/// How a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Retention {
    /// Kept until a limit (count, bytes, age) removes the oldest.
    Limits,
    /// Kept while some consumer has not acknowledged them.
    Interest,
    /// Removed once one consumer acknowledged them.
    WorkQueue,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Storage {
    /// On disk (the default): survives a server restart.
    #[default]
    File,
    /// In memory only.
    Memory,
}

/// A stream to create: its name, subjects and limits. Streams are always created with
/// limits retention and "discard old".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream name.
    pub name: String,
    /// The subjects it captures.
    pub subjects: Vec<String>,
    /// At most this many messages (`None`: unlimited).
    pub max_messages: Option<u64>,
    /// At most this many bytes (`None`: unlimited).
    pub max_bytes: Option<u64>,
    /// Messages older than this are removed (`None`: never).
    pub max_age: Option<Duration>,
    /// Replicas in a cluster (1 on a single server).
    pub replicas: usize,
    /// File or memory.
    pub storage: Storage,
    /// How long the server remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
}

/// What a stream that exists looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The stream name.
    pub name: String,
    /// The subjects it captures.
    pub subjects: Vec<String>,
    /// Its retention.
    pub retention: Retention,
    /// Messages in it now.
    pub messages: u64,
}

/// What the server said about a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence in that stream.
    pub sequence: u64,
    /// True when the server dropped it as a duplicate of an earlier message with the same
    /// id; `sequence` is then the earlier message's.
    pub duplicate: bool,
}

/// The acknowledgement of a publish that was handed to the connection, still to come.
/// Await it to learn whether the server stored the message.
#[must_use = "a publish is only known to be stored once its acknowledgement is awaited"]
pub struct PendingAck(BoxFuture<'static, Result<PublishReceipt>>);

impl PendingAck {
    /// Wraps an adapter's future.
    pub fn new(future: impl Future<Output = Result<PublishReceipt>> + Send + 'static) -> Self {
        PendingAck(Box::pin(future))
    }
}

impl Future for PendingAck {
    type Output = Result<PublishReceipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAck").finish_non_exhaustive()
    }
}

/// Where a new consumer starts in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only messages stored after the consumer was created.
    New,
    /// Every message still in the stream.
    First,
    /// Messages stored at or after this time.
    Time(SystemTime),
    /// Messages from this stream sequence on.
    Sequence(u64),
}

/// A consumer to create, or to use as it is when one with this name exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The stream it reads.
    pub stream: String,
    /// Its name; instances that use the same name share the consumer, so each message
    /// goes to one of them.
    pub name: String,
    /// Only messages on subjects matching this filter are delivered.
    pub filter_subject: String,
    /// Where it starts when it is created.
    pub start: StartAt,
    /// A delivery not acknowledged within this time is delivered again.
    pub ack_wait: Duration,
    /// At most this many deliveries awaiting acknowledgement across all its users.
    pub max_ack_pending: usize,
    /// With `Some`, the server deletes the consumer after it had no user for that long;
    /// with `None` it lives until deleted.
    pub inactive_threshold: Option<Duration>,
    /// How many messages one user buffers ahead of its handlers.
    pub prefetch: usize,
    /// A description for operators.
    pub description: String,
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Handled: never deliver it again.
    Ack,
    /// Not handled: deliver it again after the delay.
    Nak(Duration),
    /// Still being worked on: restart the acknowledgement timer.
    InProgress,
    /// Never deliver it again, though it was not handled.
    Term,
}

/// Settles deliveries for an adapter.
#[async_trait]
pub trait DeliveryAcker: Send + Sync + 'static {
    /// Sends `how` for this delivery.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when it cannot be sent;
    /// the server then delivers the message again after its acknowledgement timer.
    async fn settle(&self, how: Settle) -> Result<()>;
}

/// One delivery of a stored message to a consumer.
pub struct Delivery {
    /// The subject it was published to.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// Which delivery this is: 1 for the first.
    pub attempt: u64,
    /// Settles this delivery.
    pub acker: Box<dyn DeliveryAcker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("stream_sequence", &self.stream_sequence)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Durable streams and consumers.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Looks a stream up.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when there is no such stream;
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the server has no JetStream
    /// or refuses; [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) or
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when it does not answer.
    async fn stream(&self, name: &str) -> Result<StreamState>;

    /// Creates a stream.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) when a stream with
    /// this name exists (with another configuration);
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the server refuses (its
    /// subjects overlap another stream's, say).
    async fn create_stream(&self, spec: &StreamSpec) -> Result<StreamState>;

    /// Publishes a message for storage, with `message_id` as its deduplication id, and
    /// returns once it is handed to the connection; await the [`PendingAck`] for the
    /// server's answer. Many publishes may be awaiting acknowledgement at once.
    ///
    /// # Errors
    /// Here: [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) before
    /// sending, [`ErrorKind::Connection`](crate::ErrorKind::Connection) when it cannot be
    /// handed over. From the [`PendingAck`]:
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when no stream captures the
    /// subject, [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when no acknowledgement
    /// came in time, [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the stream
    /// refused the message.
    async fn publish(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        message_id: &str,
    ) -> Result<PendingAck>;

    /// Creates the consumer (or uses it as it is) and returns its deliveries. The stream
    /// of deliveries outlives server restarts and reconnections: the adapter recreates
    /// the consumer and resumes by itself. It ends only when dropped.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the stream does not
    /// exist; [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the server refuses
    /// the consumer.
    async fn consume(&self, spec: ConsumerSpec) -> Result<BoxStream<'static, Delivery>>;

    /// Deletes a consumer. Deleting one that does not exist succeeds.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) or
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when it cannot be done.
    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()>;

    /// The names of a stream's consumers.
    ///
    /// # Errors
    /// As for [`EventBus::stream`].
    async fn consumer_names(&self, stream: &str) -> Result<Vec<String>>;
}
