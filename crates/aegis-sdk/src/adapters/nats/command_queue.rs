//! [`CommandQueue`] over JetStream: the `COMMANDS` work-queue stream, one durable pull
//! consumer per command of a service, and the `COMMANDS_DLQ` dead-letter stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::headers::{from_nats, to_nats};
use super::NatsTransport;
use crate::domain::command_status::{self as cs, consumer_name};
use crate::domain::{MethodName, ServiceName};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::commands::{CommandQueue, CommandSource, Delivery, DeliveryAcker};
use crate::ports::Headers;

/// Max messages of `COMMANDS` when this SDK creates it (as the Python SDK does).
const STREAM_MAX_MESSAGES: i64 = 10_000;
/// How long dead letters are kept when this SDK creates `COMMANDS_DLQ`.
const DLQ_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Deliveries a consumer may have unacknowledged; workers bound what they hold
/// themselves, this only has to be above their sum.
const MAX_ACK_PENDING: i64 = 10_000;

fn storage(
    what: &str,
    e: impl std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::new(ErrorKind::Storage, format!("{what}: {e}")).with_source(e)
}

/// The JetStream command queue of one connection. Streams are looked up (and created
/// when missing) on first use, then kept.
pub struct NatsCommandQueue {
    js: jetstream::Context,
    stream: OnceCell<stream::Stream>,
    dlq: OnceCell<()>,
}

impl NatsCommandQueue {
    /// A queue on `transport`'s connection.
    pub fn new(transport: &NatsTransport) -> Self {
        NatsCommandQueue {
            js: jetstream::new(transport.client().clone()),
            stream: OnceCell::new(),
            dlq: OnceCell::new(),
        }
    }

    /// `COMMANDS`, created when missing. An existing stream is used as it is, but one
    /// whose retention is not work-queue cannot serve (every worker would see every
    /// command), so that is an error rather than a silent change.
    async fn stream(&self) -> Result<&stream::Stream> {
        self.stream
            .get_or_try_init(|| async {
                let config = stream::Config {
                    name: cs::STREAM.to_owned(),
                    subjects: vec![cs::STREAM_SUBJECTS.to_owned()],
                    retention: RetentionPolicy::WorkQueue,
                    max_messages: STREAM_MAX_MESSAGES,
                    discard: DiscardPolicy::Old,
                    storage: StorageType::File,
                    num_replicas: 1,
                    ..Default::default()
                };
                let stream = self
                    .js
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| storage("cannot get or create stream COMMANDS", e))?;
                let retention = stream.cached_info().config.retention;
                if retention != RetentionPolicy::WorkQueue {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!(
                            "stream COMMANDS exists with {retention:?} retention; commands need \
                             work-queue retention (delete or fix the stream)"
                        ),
                    ));
                }
                Ok(stream)
            })
            .await
    }

    async fn ensure_dlq(&self) -> Result<()> {
        self.dlq
            .get_or_try_init(|| async {
                let config = stream::Config {
                    name: cs::DLQ_STREAM.to_owned(),
                    subjects: vec![cs::DLQ_SUBJECTS.to_owned()],
                    max_age: DLQ_MAX_AGE,
                    storage: StorageType::File,
                    num_replicas: 1,
                    ..Default::default()
                };
                self.js
                    .get_or_create_stream(config)
                    .await
                    .map(|_| ())
                    .map_err(|e| storage("cannot get or create stream COMMANDS_DLQ", e))
            })
            .await
            .copied()
    }

    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<bool> {
        let map = to_nats(&headers)?.unwrap_or_default();
        let ack = self
            .js
            .publish_with_headers(subject.clone(), map, payload)
            .await
            .map_err(|e| map_publish(&subject, e))?
            .await
            .map_err(|e| map_publish(&subject, e))?;
        Ok(ack.duplicate)
    }
}

fn map_publish(subject: &str, e: async_nats::jetstream::context::PublishError) -> Error {
    use async_nats::jetstream::context::PublishErrorKind as K;
    let kind = match e.kind() {
        K::MaxPayloadExceeded => ErrorKind::PayloadTooLarge,
        K::BrokenPipe => ErrorKind::Connection,
        K::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Storage,
    };
    Error::new(kind, format!("cannot store a message on {subject}: {e}")).with_source(e)
}

#[async_trait]
impl CommandQueue for NatsCommandQueue {
    async fn enqueue(
        &self,
        subject: String,
        message_id: &str,
        mut headers: Headers,
        payload: Bytes,
    ) -> Result<bool> {
        self.stream().await?;
        headers.insert(cs::HEADER_MSG_ID, message_id);
        self.publish(subject, headers, payload).await
    }

    async fn source(
        &self,
        service: &ServiceName,
        command: &MethodName,
        ack_wait: Duration,
    ) -> Result<Arc<dyn CommandSource>> {
        let stream = self.stream().await?;
        let name = consumer_name(service.as_str(), command.as_str());
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: crate::domain::subjects::command(service, command),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| {
                storage(
                    &format!("cannot get or create consumer {name} on COMMANDS"),
                    e,
                )
            })?;
        let ack_wait = consumer.cached_info().config.ack_wait;
        Ok(Arc::new(NatsCommandSource { consumer, ack_wait }))
    }

    async fn dead_letter(&self, subject: String, headers: Headers, payload: Bytes) -> Result<()> {
        self.ensure_dlq().await?;
        self.publish(subject, headers, payload).await.map(|_| ())
    }
}

struct NatsCommandSource {
    consumer: jetstream::consumer::PullConsumer,
    ack_wait: Duration,
}

#[async_trait]
impl CommandSource for NatsCommandSource {
    fn ack_wait(&self) -> Duration {
        self.ack_wait
    }

    async fn pull(
        &self,
        max: usize,
        expires: Duration,
    ) -> Result<BoxStream<'static, Result<Delivery>>> {
        let batch = self
            .consumer
            .batch()
            .max_messages(max)
            .expires(expires)
            .messages()
            .await
            .map_err(|e| Error::connection(format!("cannot pull commands: {e}")).with_source(e))?;
        Ok(batch
            .map(|message| {
                let message = message.map_err(|e| {
                    Error::connection(format!("pulling commands failed: {e}")).with_source(e)
                })?;
                let (delivered, sequence) = message
                    .info()
                    .map(|i| (i.delivered.max(1) as u64, i.stream_sequence))
                    .unwrap_or((1, 0));
                let (message, acker) = message.split();
                Ok(Delivery {
                    subject: message.subject.to_string(),
                    headers: from_nats(message.headers.as_ref()),
                    payload: message.payload,
                    delivered,
                    sequence,
                    acker: Arc::new(NatsAcker(acker)),
                })
            })
            .boxed())
    }
}

struct NatsAcker(Acker);

impl NatsAcker {
    async fn send(&self, kind: AckKind) -> Result<()> {
        self.0.ack_with(kind).await.map_err(|e| {
            Error::connection(format!("cannot acknowledge a command: {e}")).with_source(e)
        })
    }
}

#[async_trait]
impl DeliveryAcker for NatsAcker {
    async fn ack(&self) -> Result<()> {
        self.send(AckKind::Ack).await
    }

    async fn nak(&self, delay: Option<Duration>) -> Result<()> {
        self.send(AckKind::Nak(delay)).await
    }

    async fn in_progress(&self) -> Result<()> {
        self.send(AckKind::Progress).await
    }
}
