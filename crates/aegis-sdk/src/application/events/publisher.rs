//! Publishing events into the `EVENTS` stream: awaited, or pipelined with many
//! acknowledgements in flight.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::OnceCell;

use super::pending::{PendingEvent, Retry};
use super::stream::{ensure_stream, EventStreamConfig, Use};
use crate::adapters::nats::NatsEventBus;
use crate::application::client::Client;
use crate::application::metrics::{self, OpKind, Outcome};
use crate::application::propagation;
use crate::domain::envelope::{is_valid_version, now_timestamp};
use crate::domain::{subjects, Encoding, Event, EventDomain, EventType};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::events::{EventBus, PublishReceipt};
use crate::ports::Headers;
use tracing::Instrument;

/// The event bus of a client's backend.
pub(crate) fn event_bus(
    client: &Client,
    max_in_flight: Option<usize>,
) -> Result<Arc<dyn EventBus>> {
    Ok(client.require_backend("events")?.event_bus(max_in_flight))
}

/// Options of an [`EventPublisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherOptions {
    /// At most this many publishes await their acknowledgement at once; a further
    /// [`EventPublisher::send`] waits for a free slot (default 4,096).
    pub max_in_flight: usize,
    /// How the `EVENTS` stream is created when missing.
    pub stream: EventStreamConfig,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            max_in_flight: NatsEventBus::DEFAULT_MAX_IN_FLIGHT,
            stream: EventStreamConfig::default(),
        }
    }
}

/// Publishes events to `events.{domain}.{event_type}` in stream `EVENTS`, creating the
/// stream when it is missing. Each event's `message_id` is its deduplication id, so a
/// retried publish is stored once. Cheap to clone; clones share the acknowledgement
/// window.
///
/// # Examples
/// ```no_run
/// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
/// use aegis_sdk::application::events::EventPublisher;
/// use serde_json::json;
///
/// let publisher = EventPublisher::new(&client)?;
/// // Awaited: returns the stream sequence.
/// let sequence = publisher.publish("order", "created", json!({"order_id": "o-1"})).await?;
///
/// // Pipelined: send many, then await each acknowledgement.
/// let mut pending = Vec::new();
/// for i in 0..1000 {
///     pending.push(publisher.send("order", "created", json!({"n": i})).await?);
/// }
/// for ack in pending {
///     ack.await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EventPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn EventBus>,
    encoding: Encoding,
    source: Option<String>,
    stream: EventStreamConfig,
    ensured: OnceCell<()>,
}

impl fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPublisher")
            .field("encoding", &self.inner.encoding)
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl EventPublisher {
    /// A publisher on `client`'s connection, encoding and source, with default options.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when the client has no backend.
    pub fn new(client: &Client) -> Result<Self> {
        Self::with_options(client, PublisherOptions::default())
    }

    /// A publisher with `options`.
    ///
    /// # Errors
    /// As for [`EventPublisher::new`].
    pub fn with_options(client: &Client, options: PublisherOptions) -> Result<Self> {
        let bus = event_bus(client, Some(options.max_in_flight))?;
        Ok(Self::with_bus(
            bus,
            client.encoding(),
            client.source().map(str::to_owned),
            options.stream,
        ))
    }

    /// A publisher over any [`EventBus`].
    pub fn with_bus(
        bus: Arc<dyn EventBus>,
        encoding: Encoding,
        source: Option<String>,
        stream: EventStreamConfig,
    ) -> Self {
        EventPublisher {
            inner: Arc::new(Inner {
                bus,
                encoding,
                source,
                stream,
                ensured: OnceCell::new(),
            }),
        }
    }

    /// Publishes an event and waits until it is stored; returns its stream sequence.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for a domain or type that is not one subject token;
    /// [`ErrorKind::Encode`], [`ErrorKind::PayloadTooLarge`] before sending;
    /// [`ErrorKind::Storage`] when the stream cannot be created or refuses the event;
    /// [`ErrorKind::Timeout`] or [`ErrorKind::Connection`] when the server does not
    /// answer.
    pub async fn publish<T: Serialize>(
        &self,
        domain: &str,
        event_type: &str,
        payload: T,
    ) -> Result<u64> {
        let receipt = self.send(domain, event_type, payload).await?.await?;
        Ok(receipt.sequence)
    }

    /// Publishes a prepared event (to set its version, correlation or trace id) and
    /// waits until it is stored.
    ///
    /// # Errors
    /// As for [`EventPublisher::publish`]; [`ErrorKind::InvalidArgument`] for an invalid
    /// version.
    pub async fn publish_event<T: Serialize>(&self, event: &Event<T>) -> Result<PublishReceipt> {
        self.send_event(event).await?.await
    }

    /// Sends an event and returns once it is handed to the connection, without waiting
    /// for the server; await the returned [`PendingEvent`] for its sequence. Up to
    /// [`PublisherOptions::max_in_flight`] events may be pending; beyond that this
    /// waits for a slot.
    ///
    /// # Errors
    /// As for [`EventPublisher::publish`], for what is known before sending; the rest
    /// comes from the [`PendingEvent`].
    pub async fn send<T: Serialize>(
        &self,
        domain: &str,
        event_type: &str,
        payload: T,
    ) -> Result<PendingEvent> {
        // As `Event::new`, with ids formatted without the `fmt` machinery: this is the
        // hot path of pipelined publishing.
        let event = Event {
            message_id: new_id(),
            trace_id: propagation::outgoing().trace.envelope_trace_id(),
            correlation_id: None,
            timestamp: now_timestamp(),
            source: self.inner.source.clone(),
            target: None,
            domain: domain.to_owned(),
            event_type: event_type.to_owned(),
            payload,
            version: Event::<T>::DEFAULT_VERSION.to_owned(),
        };
        self.send_event(&event).await
    }

    /// Sends a prepared event without waiting for the server; see [`EventPublisher::send`].
    ///
    /// # Errors
    /// As for [`EventPublisher::publish_event`].
    pub async fn send_event<T: Serialize>(&self, event: &Event<T>) -> Result<PendingEvent> {
        let domain = EventDomain::new(event.domain.as_str())?;
        let event_type = EventType::new(event.event_type.as_str())?;
        if event.version != Event::<T>::DEFAULT_VERSION && !is_valid_version(&event.version) {
            return Err(Error::invalid_argument(format!(
                "invalid event version {:?}: expected digits.digits[.digits]",
                event.version
            )));
        }
        let mut subject =
            String::with_capacity(8 + domain.as_str().len() + event_type.as_str().len());
        subject.push_str("events.");
        subject.push_str(domain.as_str());
        subject.push('.');
        subject.push_str(event_type.as_str());
        debug_assert_eq!(subject, subjects::event(&domain, &event_type));
        let payload = Bytes::from(encode(self.inner.encoding, event)?);
        let mut headers = Headers::new();
        if let Some(trace) = propagation::for_envelope(&event.trace_id) {
            propagation::inject(&mut headers, &trace);
        }
        let timing = metrics::op_if_enabled(
            OpKind::EventPublish,
            &[domain.as_str(), event_type.as_str()],
        )
        .map(|op| {
            let started = op.start();
            (op, started)
        });

        let span = tracing::info_span!(
            "aegis.event.publish",
            domain = domain.as_str(),
            event_type = event_type.as_str(),
            message_id = %event.message_id,
            trace_id = %event.trace_id,
        );
        let sent = self
            .hand_over(&subject, &headers, &payload, event)
            .instrument(span)
            .await;
        let ack = match sent {
            Ok(ack) => ack,
            Err(error) => {
                if let Some((op, started)) = timing {
                    op.finish(started, Outcome::of_error(&error));
                }
                return Err(error);
            }
        };
        Ok(PendingEvent::new(
            ack,
            Retry {
                publisher: self.clone(),
                subject,
                headers,
                payload,
                message_id: event.message_id.clone(),
            },
            timing,
        ))
    }

    async fn hand_over<T>(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        event: &Event<T>,
    ) -> Result<crate::ports::events::PendingAck> {
        // Once per publisher; a stream deleted later is recreated on NotFound below.
        self.inner
            .ensured
            .get_or_try_init(|| self.ensure(subject.to_owned()))
            .await?;

        self.inner
            .bus
            .publish(
                subject.to_owned(),
                headers.clone(),
                payload.clone(),
                &event.message_id,
            )
            .await
    }

    pub(super) fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    pub(super) async fn ensure(&self, subject: String) -> Result<()> {
        let spec = self.inner.stream.events_spec();
        ensure_stream(&*self.inner.bus, &spec, &subject, Use::Publish).await?;
        Ok(())
    }
}

/// A UUID v4 string, as `domain::envelope::new_id`.
fn new_id() -> String {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut buffer)
        .to_owned()
}

/// Encodes into a buffer sized for a typical event, sparing the reallocations.
fn encode<T: Serialize>(encoding: Encoding, event: &Event<T>) -> Result<Vec<u8>> {
    match encoding {
        Encoding::MessagePack => {
            let mut buffer = Vec::with_capacity(256);
            rmp_serde::encode::write_named(&mut buffer, event).map_err(|e| {
                Error::new(ErrorKind::Encode, format!("MessagePack: {e}")).with_source(e)
            })?;
            Ok(buffer)
        }
        Encoding::Json => encoding.encode(event),
    }
}

impl Client {
    /// Publishes an event to `events.{domain}.{event_type}` and waits until it is
    /// stored; returns its stream sequence. For many events, keep an
    /// [`EventPublisher`] (and its pipelined [`send`](EventPublisher::send)).
    ///
    /// # Errors
    /// As for [`EventPublisher::publish`].
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
    /// use serde_json::json;
    /// let sequence = client.publish_event("order", "created", json!({"order_id": "o-1"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_event<T: Serialize>(
        &self,
        domain: &str,
        event_type: &str,
        payload: T,
    ) -> Result<u64> {
        // A one-off publisher: one acknowledgement in flight, and no stream lookup up
        // front; a missing stream shows as NotFound and is created then.
        let bus = event_bus(self, Some(1))?;
        let publisher = EventPublisher::with_bus(
            bus,
            self.encoding(),
            self.source().map(str::to_owned),
            EventStreamConfig::default(),
        );
        let _ = publisher.inner.ensured.set(());
        publisher.publish(domain, event_type, payload).await
    }

    /// An [`EventPublisher`] on this client's connection, with default options.
    ///
    /// # Errors
    /// As for [`EventPublisher::new`].
    pub fn event_publisher(&self) -> Result<EventPublisher> {
        EventPublisher::new(self)
    }
}
