//! [`Transport`] over a core NATS connection.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::client::{PublishErrorKind, RequestErrorKind, SubscribeErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::broadcast;

use super::headers::{from_nats, to_nats};
use super::options::{redact_url, ConnectOptions, UrlAuth};
use crate::domain::subjects::{check_filter, check_queue_group, check_subject};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::transport::SubscriptionStream;
use crate::ports::{
    ConnectionEvent, ConnectionState, Headers, InboundMessage, Subscription, Transport,
};

/// How long [`Transport::flush`] waits for the server's confirmation.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A NATS connection implementing [`Transport`]. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct NatsTransport {
    client: async_nats::Client,
    events: broadcast::Sender<ConnectionEvent>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("state", &self.connection_state())
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects with `options`.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when no server can be reached (unless
    /// `retry_on_initial_connect` is set), or authentication or TLS fails;
    /// [`ErrorKind::InvalidArgument`] for options that [`ConnectOptions::validate`]
    /// refuses (a malformed URL, an invalid NKey seed, two ways to authenticate) or a
    /// credentials file that cannot be read.
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        options.validate()?;
        let (servers, url_auth) = options.servers()?;
        let (events, _) = broadcast::channel(64);
        let mut nats = async_nats::ConnectOptions::new()
            .connection_timeout(
                options
                    .connect_timeout
                    .unwrap_or(ConnectOptions::DEFAULT_CONNECT_TIMEOUT),
            )
            .max_reconnects(options.reconnect.max_attempts)
            // Requests carry their own timeout; nothing should wait on a hidden default.
            .request_timeout(None)
            .require_tls(options.require_tls);

        let policy = options.reconnect.clone();
        nats = nats.reconnect_delay_callback(move |attempt| policy.delay(attempt));

        let sender = events.clone();
        nats = nats.event_callback(move |event| {
            let sender = sender.clone();
            async move {
                let event = map_event(event);
                tracing::debug!(?event, "nats connection event");
                // Nobody listening is fine: the state is also queryable.
                let _ = sender.send(event);
            }
        });

        if let Some(name) = &options.name {
            nats = nats.name(name);
        }
        if let (Some(user), Some(password)) = (&options.user, &options.password) {
            nats = nats.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &options.token {
            nats = nats.token(token.clone());
        }
        if let Some(seed) = &options.nkey_seed {
            nats = nats.nkey(seed.clone());
        }
        let explicit = options.user.is_some()
            || options.token.is_some()
            || options.nkey_seed.is_some()
            || options.credentials_file.is_some();
        match url_auth {
            Some(UrlAuth::UserAndPassword(user, password)) if !explicit => {
                nats = nats.user_and_password(user, password);
            }
            Some(UrlAuth::Token(token)) if !explicit => nats = nats.token(token),
            _ => {}
        }
        if let Some(path) = &options.credentials_file {
            nats = nats.credentials_file(path).await.map_err(|e| {
                Error::invalid_argument(format!(
                    "cannot read credentials file {}: {e}",
                    path.display()
                ))
                .with_source(e)
            })?;
        }
        if let Some(ca) = &options.tls_ca {
            nats = nats.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &options.tls_client_cert {
            nats = nats.add_client_certificate(cert.clone(), key.clone());
        }
        if options.retry_on_initial_connect {
            nats = nats.retry_on_initial_connect();
        }

        let shown: Vec<String> = options
            .server_urls()
            .iter()
            .map(|u| redact_url(u))
            .collect();
        let require_tls = options.require_tls;
        let client = nats.connect(servers).await.map_err(|e| {
            // rustls' words for a server that answered in plain text.
            let text = e.to_string();
            let hint = match require_tls && text.contains("InvalidContentType") {
                true => " (TLS is required, and the server does not seem to offer it)",
                false => "",
            };
            Error::connection(format!("cannot connect to {shown:?}: {text}{hint}")).with_source(e)
        })?;
        tracing::info!(servers = ?shown, "connected to NATS");
        Ok(NatsTransport { client, events })
    }

    /// The underlying async-nats client, for the other NATS adapters of this crate.
    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// [`Transport::publish`], without the boxing of a trait call: the SDK's hot
    /// paths call it directly when they know their transport is this one.
    pub(crate) async fn publish_message(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
    ) -> Result<()> {
        check_subject(&subject)?;
        self.check_size(&headers, &payload)?;
        let result = match to_nats(&headers)? {
            None => self.client.publish(subject, payload).await,
            Some(map) => {
                self.client
                    .publish_with_headers(subject, map, payload)
                    .await
            }
        };
        result.map_err(|e| {
            let kind = match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => ErrorKind::PayloadTooLarge,
                PublishErrorKind::InvalidSubject => ErrorKind::InvalidName,
                _ => ErrorKind::Connection,
            };
            Error::new(kind, format!("publish failed: {e}")).with_source(e)
        })
    }

    /// [`Transport::request`], without the boxing of a trait call (see
    /// [`publish_message`](Self::publish_message)).
    pub(crate) async fn request_message(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<InboundMessage> {
        check_subject(&subject)?;
        self.check_size(&headers, &payload)?;
        let mut request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        if let Some(map) = to_nats(&headers)? {
            request = request.headers(map);
        }
        let subject_for_error = subject.clone();
        let message = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    RequestErrorKind::TimedOut => ErrorKind::Timeout,
                    RequestErrorKind::NoResponders => ErrorKind::NoResponders,
                    RequestErrorKind::InvalidSubject => ErrorKind::InvalidName,
                    RequestErrorKind::MaxPayloadExceeded => ErrorKind::PayloadTooLarge,
                    _ => ErrorKind::Connection,
                };
                let message = match kind {
                    ErrorKind::Timeout => {
                        format!("no reply on {subject_for_error} within {timeout:?}")
                    }
                    ErrorKind::NoResponders => format!("no responders on {subject_for_error}"),
                    _ => format!("request on {subject_for_error} failed: {e}"),
                };
                Error::new(kind, message).with_source(e)
            })?;
        Ok(InboundMessage {
            subject: message.subject.into_string(),
            reply: message.reply.map(|r| r.into_string()),
            headers: from_nats(message.headers.as_ref()),
            payload: message.payload,
        })
    }

    fn check_size(&self, headers: &Headers, payload: &Bytes) -> Result<()> {
        let size = headers.wire_len() + payload.len();
        let max = self.client.max_payload();
        if size > max {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("message of {size} bytes exceeds the server's max_payload of {max} bytes"),
            ));
        }
        Ok(())
    }
}

fn map_event(event: async_nats::Event) -> ConnectionEvent {
    match event {
        async_nats::Event::Connected => ConnectionEvent::Connected,
        async_nats::Event::Disconnected => ConnectionEvent::Disconnected,
        async_nats::Event::LameDuckMode => ConnectionEvent::LameDuckMode,
        async_nats::Event::SlowConsumer(_) => ConnectionEvent::SlowConsumer,
        async_nats::Event::ServerError(e) => ConnectionEvent::ServerError(e.to_string()),
        async_nats::Event::ClientError(e) => ConnectionEvent::ClientError(e.to_string()),
        async_nats::Event::Draining | async_nats::Event::Closed => ConnectionEvent::Closed,
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<()> {
        self.publish_message(subject, headers, payload).await
    }

    async fn request(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<InboundMessage> {
        self.request_message(subject, headers, payload, timeout)
            .await
    }

    async fn subscribe(
        &self,
        subject: String,
        queue_group: Option<String>,
    ) -> Result<Subscription> {
        check_filter(&subject)?;
        if let Some(group) = &queue_group {
            check_queue_group(group)?;
        }
        let result = match queue_group {
            Some(group) => self.client.queue_subscribe(subject.clone(), group).await,
            None => self.client.subscribe(subject.clone()).await,
        };
        let subscriber = result.map_err(|e| {
            let kind = match e.kind() {
                SubscribeErrorKind::InvalidSubject | SubscribeErrorKind::InvalidQueueName => {
                    ErrorKind::InvalidName
                }
                _ => ErrorKind::Connection,
            };
            Error::new(kind, format!("cannot subscribe to {subject}: {e}")).with_source(e)
        })?;
        Ok(Subscription::new(NatsSubscription { inner: subscriber }))
    }

    async fn flush(&self) -> Result<()> {
        // async-nats' flush only empties the socket buffer; callers here need the server
        // to have *processed* what was sent (a subscription must be live before others
        // are told to call it). The server handles a connection's messages in order, so
        // a message to ourselves that comes back proves everything before it was seen.
        let inbox = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Error::connection(format!("flush failed: {e}")).with_source(e))?;
        self.client
            .publish(inbox, Bytes::new())
            .await
            .map_err(|e| Error::connection(format!("flush failed: {e}")).with_source(e))?;
        self.client
            .flush()
            .await
            .map_err(|e| Error::connection(format!("flush failed: {e}")).with_source(e))?;
        match tokio::time::timeout(FLUSH_TIMEOUT, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::connection("flush failed: connection closed")),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("the server did not confirm a flush within {FLUSH_TIMEOUT:?}"),
            )),
        }
    }

    fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    fn connection_state(&self) -> ConnectionState {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => ConnectionState::Connected,
            _ => ConnectionState::Disconnected,
        }
    }

    fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }
}

struct NatsSubscription {
    inner: async_nats::Subscriber,
}

impl Stream for NatsSubscription {
    type Item = InboundMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|message| {
            message.map(|m| InboundMessage {
                subject: m.subject.into_string(),
                reply: m.reply.map(|r| r.into_string()),
                headers: from_nats(m.headers.as_ref()),
                payload: m.payload,
            })
        })
    }
}

impl SubscriptionStream for NatsSubscription {
    fn drain(mut self: Pin<&mut Self>) -> BoxFuture<'_, Result<()>> {
        async move {
            self.inner
                .drain()
                .await
                .map_err(|e| Error::connection(format!("drain failed: {e}")).with_source(e))
        }
        .boxed()
    }
}
