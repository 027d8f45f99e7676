//! The core messaging port: publish, request/reply and (queue) subscriptions.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;

use crate::error::Result;

/// Message headers: an ordered multimap of names to values.
///
/// Extensions the Python SDK does not know (trace context, error codes, deadlines,
/// fencing tokens) travel here rather than as extra envelope keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Checks that every header can go on the wire: a name of visible ASCII characters
    /// other than `:`, a value without CR or LF.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the first
    /// header that cannot.
    pub fn check(&self) -> Result<()> {
        for (name, value) in &self.entries {
            if name.is_empty() || name.contains(|c: char| !c.is_ascii_graphic() || c == ':') {
                return Err(crate::Error::invalid_argument(format!(
                    "invalid header name {:?}: it must be visible ASCII characters, \
                     without ':'",
                    name.chars().take(64).collect::<String>()
                )));
            }
            if value.contains(['\r', '\n']) {
                return Err(crate::Error::invalid_argument(format!(
                    "invalid value of header {name}: it must not contain CR or LF"
                )));
            }
        }
        Ok(())
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `name` to `value`, replacing earlier values of `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.entries.push((name, value.into()));
    }

    /// Adds a value for `name`, keeping earlier ones.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The size of the encoded header block on the wire (0 without headers), which
    /// servers count against their payload limits: `NATS/1.0\r\n`, `Name: value\r\n`
    /// per value, and a closing `\r\n`.
    pub fn wire_len(&self) -> usize {
        if self.entries.is_empty() {
            return 0;
        }
        // "NATS/1.0\r\n" + "name: value\r\n"... + "\r\n"
        12 + self
            .entries
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

/// A message delivered to a subscription, or a reply to a request.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// The subject it was published to.
    pub subject: String,
    /// Where to send a reply, for requests.
    pub reply: Option<String>,
    /// Its headers (empty when it had none).
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
}

/// What happened to the connection, as the program can observe it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Connected, or reconnected after an outage.
    Connected,
    /// The connection was lost; the client tries to reconnect.
    Disconnected,
    /// The server is shutting down gracefully (lame duck mode).
    LameDuckMode,
    /// A subscription could not keep up and messages were dropped.
    SlowConsumer,
    /// The server reported an error.
    ServerError(String),
    /// The client reported an error.
    ClientError(String),
    /// The connection was closed for good.
    Closed,
}

/// The connection's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected and usable.
    Connected,
    /// Not connected; (re)connecting.
    Disconnected,
    /// Closed for good.
    Closed,
}

/// A stream of messages on one subscription. Dropping it unsubscribes.
pub struct Subscription {
    inner: Pin<Box<dyn SubscriptionStream>>,
}

/// What an adapter implements to back a [`Subscription`].
pub trait SubscriptionStream: Stream<Item = InboundMessage> + Send {
    /// Stops the flow of new messages; messages already received are still yielded,
    /// then the stream ends.
    fn drain(self: Pin<&mut Self>) -> BoxFuture<'_, Result<()>>;
}

impl Subscription {
    /// Wraps an adapter's stream.
    pub fn new(inner: impl SubscriptionStream + 'static) -> Self {
        Subscription {
            inner: Box::pin(inner),
        }
    }

    /// Stops taking new messages. Messages already delivered to this client are still
    /// yielded by the stream, which then ends.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when the unsubscribe
    /// cannot be sent; the stream ends anyway.
    pub async fn drain(&mut self) -> Result<()> {
        self.inner.as_mut().drain().await
    }
}

impl Stream for Subscription {
    type Item = InboundMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// Core messaging: fire-and-forget publish, request/reply, and subscriptions with
/// optional queue groups (one member of a group gets each message).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes a message.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName) before sending for a
    /// subject that is empty, has whitespace or an empty token (see
    /// [`check_subject`](crate::domain::subjects::check_subject));
    /// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) before sending
    /// when headers and payload exceed [`Transport::max_payload`];
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when the message cannot be
    /// handed to the connection.
    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<()>;

    /// Sends a request and waits up to `timeout` for the first reply.
    ///
    /// # Errors
    /// [`ErrorKind::NoResponders`](crate::ErrorKind::NoResponders) as soon as the server
    /// says nobody listens; [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) only when
    /// `timeout` has passed; [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName) and
    /// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) before sending, as
    /// for [`Transport::publish`]; [`ErrorKind::Connection`](crate::ErrorKind::Connection)
    /// otherwise.
    async fn request(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<InboundMessage>;

    /// Subscribes to `subject` (wildcards allowed), in `queue_group` if given.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName) for an invalid subject
    /// (see [`check_filter`](crate::domain::subjects::check_filter)) or queue group
    /// (empty, or with whitespace);
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when the subscription
    /// cannot be registered.
    async fn subscribe(&self, subject: String, queue_group: Option<String>)
        -> Result<Subscription>;

    /// Waits until the server has processed everything sent so far on this connection
    /// (publishes and subscriptions): a round trip, not only an emptied buffer.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when it cannot.
    async fn flush(&self) -> Result<()>;

    /// The largest message (headers and payload) the server accepts, in bytes.
    fn max_payload(&self) -> usize;

    /// The connection's current state.
    fn connection_state(&self) -> ConnectionState;

    /// A receiver of connection events from now on.
    fn connection_events(&self) -> tokio::sync::broadcast::Receiver<ConnectionEvent>;
}
