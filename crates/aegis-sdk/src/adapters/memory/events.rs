//! [`EventBus`] in memory: the durable consumers of
//! the in-memory streams, behind the same port as JetStream.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::consumer::{ConsumerConfig, Settlement};
use super::stream::{StreamConfig, Streams};
use crate::error::Result;
use crate::ports::events::{
    ConsumerSpec, Delivery, DeliveryAcker, EventBus, PendingAck, Retention, Settle, StreamSpec,
    StreamState,
};
use crate::ports::Headers;

/// The header JetStream keeps a message's deduplication id in.
const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// Durable event streams in memory. Cheap to clone; clones (and every client of one
/// [`MemoryBackend`](super::MemoryBackend)) share the streams.
#[derive(Clone)]
pub struct MemoryEventBus {
    streams: Streams,
}

impl std::fmt::Debug for MemoryEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEventBus").finish_non_exhaustive()
    }
}

impl MemoryEventBus {
    pub(crate) fn new(streams: Streams) -> Self {
        MemoryEventBus { streams }
    }
}

/// A message as a stream stores it, for assertions in tests (see
/// [`MemoryBackend::messages`](super::MemoryBackend::messages)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredMessage {
    /// The subject it was published to.
    pub subject: String,
    /// Its sequence in the stream.
    pub sequence: u64,
    /// Its headers (`Nats-Msg-Id` included, as a server keeps it).
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
}

/// Settles one delivery of one consumer.
struct MemoryAcker {
    streams: Streams,
    stream: String,
    consumer: String,
    sequence: u64,
}

#[async_trait]
impl DeliveryAcker for MemoryAcker {
    async fn settle(&self, how: Settle) -> Result<()> {
        let how = match how {
            Settle::Ack => Settlement::Ack,
            Settle::Nak(delay) => Settlement::Nak(delay),
            Settle::InProgress => Settlement::InProgress,
            Settle::Term => Settlement::Term,
        };
        self.streams
            .settle(&self.stream, &self.consumer, self.sequence, how);
        Ok(())
    }
}

/// Counts a consume stream as a user of its consumer while it lives.
struct User {
    streams: Streams,
    stream: String,
    consumer: String,
}

impl Drop for User {
    fn drop(&mut self) {
        self.streams.attach(&self.stream, &self.consumer, false);
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn stream(&self, name: &str) -> Result<StreamState> {
        self.streams.stream(name)
    }

    async fn create_stream(&self, spec: &StreamSpec) -> Result<StreamState> {
        self.streams.create(StreamConfig {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            retention: Retention::Limits,
            max_messages: spec.max_messages,
            max_age: spec.max_age,
            duplicate_window: spec.duplicate_window,
        })
    }

    async fn publish(
        &self,
        subject: String,
        mut headers: Headers,
        payload: Bytes,
        message_id: &str,
    ) -> Result<PendingAck> {
        // A server stores the id with the message, where consumers see it.
        headers.insert(MESSAGE_ID_HEADER, message_id);
        Streams::check_size(&subject, &headers, &payload)?;
        let stored = self
            .streams
            .publish(subject, headers, payload, Some(message_id));
        Ok(PendingAck::new(async move { stored }))
    }

    async fn consume(&self, spec: ConsumerSpec) -> Result<BoxStream<'static, Delivery>> {
        let config = ConsumerConfig {
            filter: spec.filter_subject.clone(),
            start: spec.start,
            ack_wait: spec.ack_wait,
            max_ack_pending: spec.max_ack_pending,
            inactive_threshold: spec.inactive_threshold,
        };
        self.streams.consumer(&spec.stream, &spec.name, &config)?;
        self.streams.attach(&spec.stream, &spec.name, true);
        let user = User {
            streams: self.streams.clone(),
            stream: spec.stream.clone(),
            consumer: spec.name.clone(),
        };
        let state = (user, config);
        Ok(futures::stream::unfold(state, |(user, config)| async move {
            let taken = user
                .streams
                .next(&user.stream, &user.consumer, &config, None)
                .await?;
            let delivery = Delivery {
                subject: taken.subject,
                headers: taken.headers,
                payload: taken.payload,
                stream_sequence: taken.sequence,
                attempt: taken.delivered,
                acker: Box::new(MemoryAcker {
                    streams: user.streams.clone(),
                    stream: user.stream.clone(),
                    consumer: user.consumer.clone(),
                    sequence: taken.sequence,
                }),
            };
            Some((delivery, (user, config)))
        })
        .boxed())
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        self.streams.delete_consumer(stream, name)
    }

    async fn consumer_names(&self, stream: &str) -> Result<Vec<String>> {
        self.streams.consumer_names(stream)
    }
}
