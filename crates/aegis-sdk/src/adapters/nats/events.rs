//! [`EventBus`] over JetStream: streams, acknowledged publishes and pull consumers that
//! resume by themselves.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::headers::{from_nats, to_nats};
use super::jetstream::{consumer_error, create_stream, publish_error, stream_state};
use super::transport::NatsTransport;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::events::{
    ConsumerSpec, Delivery, DeliveryAcker, EventBus, PendingAck, PublishReceipt, Settle, StartAt,
    StreamSpec, StreamState,
};
use crate::ports::Headers;

/// How long JetStream API requests and publish acknowledgements may take.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pull request waits on the server before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// How often the server says "still here" on an idle pull; two missed ones mean the
/// pull is gone (a server restart, say) and the consumer is set up again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(3);
/// Waits between attempts to set a consumer up again, growing to the last.
const RESUME_DELAYS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// JetStream on a NATS connection, implementing [`EventBus`]. Cheap to clone.
#[derive(Clone)]
pub struct NatsEventBus {
    context: jetstream::Context,
}

impl std::fmt::Debug for NatsEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEventBus").finish_non_exhaustive()
    }
}

impl NatsEventBus {
    /// The default number of publishes awaiting acknowledgement at once.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

    /// JetStream on `transport`'s connection, with up to
    /// [`DEFAULT_MAX_IN_FLIGHT`](Self::DEFAULT_MAX_IN_FLIGHT) publishes in flight.
    pub fn new(transport: &NatsTransport) -> Self {
        Self::with_max_in_flight(transport, Self::DEFAULT_MAX_IN_FLIGHT)
    }

    /// JetStream on `transport`'s connection with at most `max_in_flight` publishes
    /// awaiting acknowledgement; a further publish waits for a free slot.
    pub fn with_max_in_flight(transport: &NatsTransport, max_in_flight: usize) -> Self {
        let context = ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .max_ack_inflight(max_in_flight.max(1))
            .backpressure_on_inflight(true)
            .build(transport.client().clone());
        NatsEventBus { context }
    }

    async fn open(&self, spec: &ConsumerSpec) -> Result<pull::Stream> {
        let config = pull::Config {
            durable_name: Some(spec.name.clone()),
            description: Some(spec.description.clone()),
            deliver_policy: deliver_policy(spec.start)?,
            ack_policy: AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            filter_subject: spec.filter_subject.clone(),
            max_ack_pending: i64::try_from(spec.max_ack_pending).unwrap_or(i64::MAX),
            inactive_threshold: spec.inactive_threshold.unwrap_or_default(),
            ..Default::default()
        };
        let consumer: jetstream::consumer::Consumer<pull::Config> = self
            .context
            .create_consumer_on_stream(config, &spec.stream)
            .await
            .map_err(|e| consumer_error(&format!("cannot create consumer {}", spec.name), e))?;
        consumer
            .stream()
            .max_messages_per_batch(spec.prefetch.max(1))
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Storage,
                    format!("cannot pull from consumer {}: {e}", spec.name),
                )
                .with_source(e)
            })
    }
}

fn deliver_policy(start: StartAt) -> Result<DeliverPolicy> {
    Ok(match start {
        StartAt::New => DeliverPolicy::New,
        StartAt::First => DeliverPolicy::All,
        StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence {
            start_sequence: start_sequence.max(1),
        },
        StartAt::Time(time) => {
            // async-nats takes its own time type; its serde form is RFC 3339.
            let time = chrono::DateTime::<chrono::Utc>::from(time)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            serde_json::from_value(serde_json::json!({
                "deliver_policy": "by_start_time",
                "opt_start_time": time,
            }))
            .map_err(|e| Error::invalid_argument(format!("invalid start time {time}: {e}")))?
        }
    })
}

/// The state of one consumer's delivery stream.
struct Resuming {
    bus: NatsEventBus,
    spec: ConsumerSpec,
    messages: Option<pull::Stream>,
    failures: usize,
}

impl Resuming {
    /// The next delivery. Any failure of the pull (a server restart, a lost connection,
    /// a deleted consumer) drops the pull and sets the consumer up again; creation is
    /// idempotent, so a surviving durable consumer is simply reused and its unacknowledged
    /// messages are delivered again.
    async fn next(&mut self) -> Delivery {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                let delay = RESUME_DELAYS[self.failures.min(RESUME_DELAYS.len() - 1)];
                tokio::time::sleep(delay).await;
                match self.bus.open(&self.spec).await {
                    Ok(messages) => {
                        tracing::debug!(consumer = %self.spec.name, "consumer resumed");
                        self.messages = Some(messages);
                    }
                    Err(error) => {
                        self.failures += 1;
                        tracing::debug!(consumer = %self.spec.name, %error, "consumer cannot resume yet");
                    }
                }
                continue;
            };
            match messages.next().await {
                Some(Ok(message)) => match delivery(message) {
                    Some(delivery) => {
                        self.failures = 0;
                        return delivery;
                    }
                    None => continue,
                },
                Some(Err(error)) => {
                    tracing::debug!(consumer = %self.spec.name, %error, "pull failed; resuming");
                    self.messages = None;
                    self.failures += 1;
                }
                None => {
                    tracing::debug!(consumer = %self.spec.name, "pull ended; resuming");
                    self.messages = None;
                }
            }
        }
    }
}

fn delivery(message: jetstream::Message) -> Option<Delivery> {
    let (stream_sequence, attempt) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            u64::try_from(info.delivered).unwrap_or(1),
        ),
        Err(error) => {
            tracing::debug!(%error, "message without JetStream metadata ignored");
            return None;
        }
    };
    let (message, acker) = message.split();
    Some(Delivery {
        subject: message.subject.to_string(),
        headers: from_nats(message.headers.as_ref()),
        payload: message.payload,
        stream_sequence,
        attempt: attempt.max(1),
        acker: Box::new(NatsAcker(acker)),
    })
}

struct NatsAcker(jetstream::message::Acker);

#[async_trait]
impl DeliveryAcker for NatsAcker {
    async fn settle(&self, how: Settle) -> Result<()> {
        let kind = match how {
            Settle::Ack => AckKind::Ack,
            Settle::Nak(delay) if delay.is_zero() => AckKind::Nak(None),
            Settle::Nak(delay) => AckKind::Nak(Some(delay)),
            Settle::InProgress => AckKind::Progress,
            Settle::Term => AckKind::Term,
        };
        self.0.ack_with(kind).await.map_err(|e| {
            Error::connection(format!("cannot settle delivery ({how:?}): {e}")).with_source(e)
        })
    }
}

#[async_trait]
impl EventBus for NatsEventBus {
    async fn stream(&self, name: &str) -> Result<StreamState> {
        stream_state(&self.context, name).await
    }

    async fn create_stream(&self, spec: &StreamSpec) -> Result<StreamState> {
        create_stream(&self.context, spec).await
    }

    async fn publish(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        message_id: &str,
    ) -> Result<PendingAck> {
        let mut publish = Publish::build().payload(payload);
        if let Some(map) = to_nats(&headers)? {
            publish = publish.headers(map);
        }
        let publish = publish.message_id(message_id);
        let ack = self
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| publish_error(&subject, e))?;
        Ok(PendingAck::new(async move {
            let ack = ack.await.map_err(|e| publish_error(&subject, e))?;
            Ok(PublishReceipt {
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        }))
    }

    async fn consume(&self, spec: ConsumerSpec) -> Result<BoxStream<'static, Delivery>> {
        // The first setup reports its errors; later ones are retried in the background.
        let messages = self.open(&spec).await?;
        let state = Resuming {
            bus: self.clone(),
            spec,
            messages: Some(messages),
            failures: 0,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let delivery = state.next().await;
            Some((delivery, state))
        })
        .boxed())
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        match self.context.delete_consumer_from_stream(name, stream).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = consumer_error(&format!("cannot delete consumer {name}"), e);
                if error.kind() == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn consumer_names(&self, stream: &str) -> Result<Vec<String>> {
        let found = self.context.get_stream_no_info(stream).await.map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("cannot open stream {stream}: {e}"),
            )
            .with_source(e)
        })?;
        let mut names = Vec::new();
        let mut pages = found.consumer_names();
        while let Some(name) = pages.next().await {
            names.push(name.map_err(|e| {
                Error::new(
                    ErrorKind::Storage,
                    format!("cannot list consumers of {stream}: {e}"),
                )
                .with_source(e)
            })?);
        }
        Ok(names)
    }
}
