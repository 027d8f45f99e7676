//! The client side of RPC: call a method of a service and get its typed result.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use tracing::Instrument;

use super::metrics::{self, OpKind};
use super::propagation;
use crate::adapters::nats::{ConnectOptions, NatsBackend, NatsTransport};
use crate::domain::election::{LEADER_HEADER, RECEIPT_HEADER};
use crate::domain::envelope::{self, RpcRequestRef};
use crate::domain::hot;
use crate::domain::{subjects, Encoding, InstanceId, MethodName, ServiceName};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::{Backend, ConnectionEvent, ConnectionState, Headers, Transport};

/// A handle to the messaging system: makes calls, and is what services run on.
///
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    transport: Arc<dyn Transport>,
    backend: Option<Arc<dyn Backend>>,
    nats: Option<NatsTransport>,
    encoding: Encoding,
    default_timeout: Duration,
    source: Option<String>,
    commands: Arc<std::sync::OnceLock<super::commands::CommandPorts>>,
    /// The subjects (`rpc.{service}.{method}`) of methods seen to be exclusive (a
    /// leader answered with its name, or a standby refused), with the last leader
    /// known. A call to one that stays silent asks that leader whether it is alive
    /// (see [`PROBE_AFTER`]).
    exclusive: Arc<std::sync::RwLock<std::collections::HashMap<String, Option<String>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("encoding", &self.inner.encoding)
            .field("default_timeout", &self.inner.default_timeout)
            .field("source", &self.inner.source)
            .field("state", &self.connection_state())
            .finish()
    }
}

impl Client {
    /// The default RPC timeout: 5 s, as in the wire contract.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to NATS.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when no server can be reached.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run() -> aegis_sdk::Result<()> {
    /// use aegis_sdk::{Client, ConnectOptions};
    /// let client = Client::connect(&ConnectOptions::from_env()?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(options: &ConnectOptions) -> Result<Client> {
        let nats = NatsTransport::connect(options).await?;
        let backend = Arc::new(NatsBackend::new(nats.clone()));
        Ok(Client::build(
            Arc::new(nats.clone()),
            Some(backend),
            Some(nats),
        ))
    }

    /// A client over any [`Transport`], for RPC only: events, commands, KV and
    /// single-active mode need a [`Backend`] too (see [`Client::with_backend`]).
    pub fn new(transport: Arc<dyn Transport>) -> Client {
        Client::build(transport, None, None)
    }

    /// A client over any [`Transport`] and [`Backend`]: the in-memory pair of
    /// `adapters::memory::MemoryBackend` (feature `testing`) in unit tests, say.
    pub fn with_backend(transport: Arc<dyn Transport>, backend: Arc<dyn Backend>) -> Client {
        Client::build(transport, Some(backend), None)
    }

    /// A client on a fresh in-memory bus, with in-memory events, commands, KV, registry
    /// and election: everything a service needs, in one process and no server. Clones
    /// share the bus; for several clients on one bus (one per service instance, say),
    /// make them from one [`MemoryBackend`](crate::adapters::memory::MemoryBackend).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aegis_sdk::Result<()> {
    /// use aegis_sdk::{Client, HandlerError, RpcContext, Service};
    /// use serde_json::{json, Value};
    ///
    /// let client = Client::in_memory();
    /// let service = Service::builder("echo")
    ///     .rpc("echo", |_: RpcContext, p: Value| async move { Ok::<_, HandlerError>(p) })
    ///     .build()?;
    /// service.start(&client).await?;
    /// let reply: Value = client.call("echo", "echo", json!({"hi": 1})).await?;
    /// assert_eq!(reply, json!({"hi": 1}));
    /// service.stop().await
    /// # }
    /// ```
    #[cfg(feature = "testing")]
    pub fn in_memory() -> Client {
        crate::adapters::memory::MemoryBackend::new().client()
    }

    /// `transport` and `nats`, when given, are the same connection: the hot paths call
    /// `nats` directly, the rest go through `transport`.
    fn build(
        transport: Arc<dyn Transport>,
        backend: Option<Arc<dyn Backend>>,
        nats: Option<NatsTransport>,
    ) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                transport,
                backend,
                nats,
                encoding: Encoding::default(),
                default_timeout: Self::DEFAULT_TIMEOUT,
                source: None,
                commands: Default::default(),
                exclusive: Default::default(),
            }),
        }
    }

    fn modified(&self, change: impl FnOnce(&mut ClientInner)) -> Client {
        let mut inner = ClientInner {
            transport: self.inner.transport.clone(),
            backend: self.inner.backend.clone(),
            nats: self.inner.nats.clone(),
            encoding: self.inner.encoding,
            default_timeout: self.inner.default_timeout,
            source: self.inner.source.clone(),
            commands: self.inner.commands.clone(),
            exclusive: self.inner.exclusive.clone(),
        };
        change(&mut inner);
        Client {
            inner: Arc::new(inner),
        }
    }

    /// A client on the same connection that encodes with `encoding`.
    pub fn with_encoding(&self, encoding: Encoding) -> Client {
        self.modified(|inner| inner.encoding = encoding)
    }

    /// A client on the same connection whose calls wait `timeout` unless told otherwise.
    pub fn with_default_timeout(&self, timeout: Duration) -> Client {
        self.modified(|inner| inner.default_timeout = timeout)
    }

    /// A client on the same connection that names `source` as the sender of its
    /// messages (services do this with their instance id).
    pub fn with_source(&self, source: impl Into<String>) -> Client {
        let source = source.into();
        self.modified(|inner| inner.source = Some(source))
    }

    /// The encoding of outgoing envelopes.
    pub fn encoding(&self) -> Encoding {
        self.inner.encoding
    }

    /// The transport this client uses.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The adapters of events, commands, KV and election, when the client has them.
    pub fn backend(&self) -> Option<&Arc<dyn Backend>> {
        self.inner.backend.as_ref()
    }

    /// The backend, or [`ErrorKind::InvalidArgument`] naming `what` needs it.
    pub(crate) fn require_backend(&self, what: &str) -> Result<&Arc<dyn Backend>> {
        self.inner.backend.as_ref().ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what} need a client with a backend (Client::connect, or Client::in_memory \
                 in tests); this one was made with Client::new over a bare transport"
            ))
        })
    }

    /// The NATS connection, when this client talks to a real server.
    pub fn nats(&self) -> Option<&NatsTransport> {
        self.inner.nats.as_ref()
    }

    /// The command adapters of this connection, made once and shared by its clones.
    pub(crate) fn command_ports_cell(&self) -> &std::sync::OnceLock<super::commands::CommandPorts> {
        &self.inner.commands
    }

    /// The sender name put in `source`.
    pub fn source(&self) -> Option<&str> {
        self.inner.source.as_deref()
    }

    /// The connection's current state.
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.transport.connection_state()
    }

    /// Connection events from now on (connected, disconnected, ...).
    pub fn connection_events(&self) -> tokio::sync::broadcast::Receiver<ConnectionEvent> {
        self.inner.transport.connection_events()
    }

    /// Calls `method` of `service` with `params`. Await the returned [`Call`] to get the
    /// result as an `R`; set a timeout or a target instance on it first if needed.
    ///
    /// `params` must serialize to a map (a struct, a map, `json!({})` for none): the
    /// wire contract carries them so. Anything else fails with
    /// [`ErrorKind::InvalidArgument`] before anything is sent.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
    /// use serde_json::{json, Value};
    /// use std::time::Duration;
    /// let reply: Value = client
    ///     .call("echo-service", "echo", json!({"message": "hi"}))
    ///     .timeout(Duration::from_secs(1))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn call<P, R>(&self, service: &str, method: &str, params: P) -> Call<P, R>
    where
        P: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        Call {
            client: self.clone(),
            service: service.to_owned(),
            method: method.to_owned(),
            params,
            timeout: None,
            instance: None,
            headers: Headers::new(),
            _result: PhantomData,
        }
    }
}

/// A call being prepared. Await it to send it.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<P, R> {
    client: Client,
    service: String,
    method: String,
    params: P,
    timeout: Option<Duration>,
    instance: Option<String>,
    headers: Headers,
    _result: PhantomData<fn() -> R>,
}

impl<P, R> Call<P, R>
where
    P: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    /// How long to wait for the reply (default: the client's, 5 s unless changed).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the call to one instance only, on its own subject
    /// `rpc.{service}.{method}.{instance}`, rather than to the queue group.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds a header to the request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The names, checked: the metrics' labels come from them, so that a name that
    /// cannot be called never becomes a series.
    fn names(&mut self) -> Result<(ServiceName, MethodName)> {
        let service = ServiceName::new(std::mem::take(&mut self.service))?;
        let method = MethodName::new(std::mem::take(&mut self.method))?;
        Ok((service, method))
    }

    async fn send(mut self, service: ServiceName, method: MethodName) -> Result<R> {
        let timeout = self.timeout.unwrap_or(self.client.inner.default_timeout);
        if timeout.is_zero() {
            return Err(Error::invalid_argument("call timeout must be > 0"));
        }
        if !crate::domain::map_probe::serializes_to_map(&self.params) {
            return Err(Error::invalid_argument(format!(
                "the params of {service}.{method} must serialize to a map (a struct or a \
                 map, e.g. `json!({{}})` for none): the wire contract carries params as a map"
            )));
        }
        let pinned = self.instance.is_some();
        let queue_subject = subjects::rpc(&service, &method);
        let instance = self.instance.take().map(InstanceId::new).transpose()?;
        let mut subject = match &instance {
            Some(instance) => subjects::rpc_instance(&service, &method, instance),
            None => queue_subject.clone(),
        };
        // Who the call is for, as timeouts name it: the service, or one instance of it.
        let callee = || match &instance {
            Some(instance) => format!("{service} instance {instance}"),
            None => service.to_string(),
        };

        // One request id for every attempt: they are one call.
        let message_id = envelope::new_id();
        let trace = propagation::outgoing();
        let trace_id = trace.trace.envelope_trace_id();
        trace.inject(&mut self.headers);
        let span = tracing::Span::current();
        span.record("message_id", message_id.as_str());
        span.record("trace_id", trace_id.as_str());
        let deadline = super::clock::after(timeout);
        let mut backoff = FIRST_BACKOFF;
        let mut failing_over = false;
        let mut exclusive = !pinned && self.client.known_leader(&queue_subject).is_some();
        // The instance the current subject names, if not the queue group, and the last
        // named leader that turned out not to be there.
        let mut target: Option<String> = None;
        let mut gone: Option<String> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let message = match failing_over {
                    true => format!(
                        "no active instance of {service} answered {method} within {timeout:?}"
                    ),
                    false => format!("no reply from {} to {method} within {timeout:?}", callee()),
                };
                return Err(Error::new(ErrorKind::Timeout, message));
            }
            // Encode before the await: the borrowed params need not be `Sync`.
            let payload = self.client.encode_request(
                &self.params,
                &service,
                &method,
                &message_id,
                &trace_id,
                left,
            )?;
            // The leader an exclusive call is expected to reach, to ask after it if the
            // call stays silent.
            let watched = match (&target, exclusive) {
                (Some(named), _) => Some(named.clone()),
                (None, true) => self.client.known_leader(&queue_subject).flatten(),
                (None, false) => None,
            }
            .filter(|leader| Some(leader) != gone.as_ref());
            let attempt = match watched {
                None => {
                    self.client
                        .attempt::<R>(payload, &subject, &self.headers, &message_id, left)
                        .await
                }
                Some(leader) => {
                    // The cold path, boxed: inline, its state would make every call's
                    // future several times larger.
                    Box::pin(self.client.exclusive_attempt::<R>(
                        payload,
                        &subject,
                        &self.headers,
                        &message_id,
                        (&service, &method, &leader),
                        left,
                    ))
                    .await
                }
            };

            // A single-active service refused (a standby answered), the leader it named
            // is gone, or the leader a silent call went to proved gone: retry within the
            // deadline. A named leader is tried at once on its own subject, unless it
            // already proved gone (standbys keep naming a crashed leader until one of
            // them takes over); otherwise back off and go through the queue group.
            // Every round through the queue group pauses, so a caller never spins.
            // Other errors are final (a timeout too: the call may have run); a refusal,
            // or a leader gone before it answered, means the method did not run here.
            match attempt {
                Err(Refused { error, leader })
                    if !pinned && error.kind() == ErrorKind::NotActive =>
                {
                    failing_over = true;
                    exclusive = true;
                    self.client.learn_leader(&queue_subject, leader.as_deref());
                    let hinted = leader
                        .filter(|leader| Some(leader) != gone.as_ref())
                        .and_then(|leader| InstanceId::new(leader).ok());
                    match hinted {
                        Some(leader) if target.is_none() => {
                            subject = subjects::rpc_instance(&service, &method, &leader);
                            target = Some(leader.as_str().to_owned());
                        }
                        _ => {
                            subject = queue_subject.clone();
                            target = None;
                            backoff = self.client.pause(backoff, deadline).await;
                        }
                    }
                    tracing::debug!(%service, %method, %error, "not active; retrying");
                }
                Err(Refused { error, leader })
                    if (failing_over || leader.is_some())
                        && error.kind() == ErrorKind::NoResponders =>
                {
                    failing_over = true;
                    // The instance addressed, or the watched leader that proved gone.
                    if let Some(dead) = target.take().or(leader) {
                        gone = Some(dead);
                    }
                    subject = queue_subject.clone();
                    backoff = self.client.pause(backoff, deadline).await;
                }
                // The last attempt had what was left of the deadline; name the call's.
                Err(Refused { error, .. }) if error.kind() == ErrorKind::Timeout => {
                    // Requests made while the connection is down wait in the client
                    // for it to come back: say so, it is the likely reason.
                    let down = match self.client.connection_state() {
                        ConnectionState::Connected => "",
                        _ => " (the connection to NATS is down)",
                    };
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "no reply from {} to {method} within {timeout:?}{down}",
                            callee()
                        ),
                    )
                    .with_source(error));
                }
                Err(Refused { error, .. }) => return Err(error),
                Ok((result, led)) => {
                    if let Some(leader) = led {
                        if !pinned {
                            self.client.learn_leader(&queue_subject, Some(&leader));
                        }
                    }
                    return Ok(result);
                }
            }
        }
    }
}

/// How long an exclusive call waits for its reply before it asks the leader it went to
/// whether it is alive; the question is asked again at doubling intervals, up to
/// [`MAX_PROBE_INTERVAL`], for as long as the call waits. A leader that answers is left
/// to finish the call, however long it takes. One that is gone (the server knows nobody
/// on its subject) before it confirmed the call never ran it (it crashed, maybe before
/// the server noticed when the call was sent): the call is sent again, to whoever leads
/// now. One that is gone after confirming it may have run it: the call ends with
/// [`ErrorKind::Interrupted`].
const PROBE_AFTER: Duration = Duration::from_millis(100);
/// The longest pause between two questions to a silent leader.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one question to a silent leader waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// The first pause between retries during a failover; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause between retries during a failover.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A failed attempt, with the leader a refusing standby named.
struct Refused {
    error: Error,
    leader: Option<String>,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused {
            error,
            leader: None,
        }
    }
}

impl Client {
    /// `None` when the method of `subject` is not known to be exclusive; else the last
    /// leader seen for it, if any.
    fn known_leader(&self, subject: &str) -> Option<Option<String>> {
        let known = self
            .inner
            .exclusive
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if known.is_empty() {
            return None;
        }
        known.get(subject).cloned()
    }

    /// Records that the method of `subject` is exclusive, and its leader when named.
    fn learn_leader(&self, subject: &str, leader: Option<&str>) {
        let unchanged = |known: &std::collections::HashMap<String, Option<String>>| {
            known
                .get(subject)
                .is_some_and(|l| leader.is_none() || l.as_deref() == leader)
        };
        if unchanged(
            &self
                .inner
                .exclusive
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        ) {
            return;
        }
        let mut known = self
            .inner
            .exclusive
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let entry = known.entry(subject.to_owned()).or_default();
        if let Some(leader) = leader {
            *entry = Some(leader.to_owned());
        }
    }

    /// One attempt of an exclusive call, sent to `leader`'s group or subject and
    /// [`watched`](Self::watched) while it waits.
    async fn exclusive_attempt<R: DeserializeOwned>(
        &self,
        payload: Vec<u8>,
        subject: &str,
        headers: &Headers,
        message_id: &str,
        (service, method, leader): (&ServiceName, &MethodName, &str),
        left: Duration,
    ) -> std::result::Result<(R, Option<String>), Refused> {
        // The leader confirms on a subject of our own that it took the call: subscribed
        // before the request goes out, on the same connection.
        let receipt = format!("_INBOX.aegis.{}", envelope::new_id());
        let receipts = self
            .inner
            .transport
            .subscribe(receipt.clone(), None)
            .await?;
        let mut headers = headers.clone();
        headers.insert(RECEIPT_HEADER, receipt);
        let attempt = self.attempt::<R>(payload, subject, &headers, message_id, left);
        self.watched(attempt, receipts, service, method, leader, left)
            .await
    }

    /// Waits for an exclusive call's `attempt`, asking `leader` whether it is alive
    /// while the reply is late (see [`PROBE_AFTER`]). A leader that is gone before it
    /// confirmed the call (on `receipts`) ends the attempt with a no-responders refusal
    /// naming it, and the call is sent again; one that is gone after confirming it ends
    /// the call with [`ErrorKind::Interrupted`]: it may have run.
    async fn watched<R>(
        &self,
        attempt: impl Future<Output = std::result::Result<(R, Option<String>), Refused>>,
        mut receipts: crate::ports::Subscription,
        service: &ServiceName,
        method: &MethodName,
        leader: &str,
        left: Duration,
    ) -> std::result::Result<(R, Option<String>), Refused> {
        let Ok(instance) = InstanceId::new(leader) else {
            return attempt.await;
        };
        let end = Instant::now() + left;
        let mut attempt = std::pin::pin!(attempt);
        let mut interval = PROBE_AFTER;
        let mut confirmed = false;
        loop {
            let wake = (Instant::now() + interval).min(end);
            tokio::select! {
                result = &mut attempt => return result,
                Some(_) = receipts.next(), if !confirmed => {
                    confirmed = true;
                    continue;
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= end {
                return attempt.await;
            }
            let probe = self.inner.transport.request(
                subjects::liveness(service, &instance),
                Headers::new(),
                bytes::Bytes::new(),
                PROBE_TIMEOUT,
            );
            let mut probe = std::pin::pin!(probe);
            let answer = loop {
                tokio::select! {
                    result = &mut attempt => return result,
                    Some(_) = receipts.next(), if !confirmed => confirmed = true,
                    answer = &mut probe => break answer,
                }
            };
            interval = (interval * 2).min(MAX_PROBE_INTERVAL);
            match answer {
                // Alive: the call is with it, or was lost elsewhere; keep watching.
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::NoResponders => {
                    // A confirmation may still be on its way: it was sent before the
                    // leader went, so it arrives before anything we ask now.
                    if !confirmed {
                        confirmed = matches!(receipts.next().now_or_never(), Some(Some(_)));
                    }
                    tracing::debug!(%service, %method, %leader, confirmed, "leader gone while a call waited on it");
                    let error = if confirmed {
                        Error::new(
                            ErrorKind::Interrupted,
                            format!(
                                "{service} leader {leader} went away while running {method}; \
                                 the call may have run"
                            ),
                        )
                    } else {
                        Error::new(
                            ErrorKind::NoResponders,
                            format!("{service} leader {leader} is gone"),
                        )
                    };
                    return Err(Refused {
                        leader: (!confirmed).then(|| leader.to_owned()),
                        error,
                    });
                }
                // No answer (frozen, or the server is slow): ask again later.
                Err(_) => {}
            }
        }
    }

    /// Sleeps `backoff` (not past `deadline`); returns the next backoff.
    async fn pause(&self, backoff: Duration, deadline: Instant) -> Duration {
        tokio::time::sleep_until(deadline.min(Instant::now() + backoff)).await;
        (backoff * 2).min(MAX_BACKOFF)
    }

    /// The request envelope of one attempt, with what is left of the deadline.
    fn encode_request<P: Serialize>(
        &self,
        params: &P,
        service: &ServiceName,
        method: &MethodName,
        message_id: &str,
        trace_id: &str,
        left: Duration,
    ) -> Result<Vec<u8>> {
        let timestamp = envelope::now_timestamp();
        let request = RpcRequestRef {
            message_id,
            trace_id,
            correlation_id: None,
            timestamp: &timestamp,
            source: self.inner.source.as_deref(),
            target: Some(service.as_str()),
            method: method.as_str(),
            params,
            timeout: left.as_secs_f64(),
        };
        self.inner.encoding.encode(&request)
    }

    /// One request and its decoded reply, with the single-active leader that answered,
    /// if one did.
    async fn attempt<R: DeserializeOwned>(
        &self,
        payload: Vec<u8>,
        subject: &str,
        headers: &Headers,
        message_id: &str,
        left: Duration,
    ) -> std::result::Result<(R, Option<String>), Refused> {
        tracing::trace!(%subject, %message_id, "rpc call");
        let (subject, headers, payload) = (subject.to_owned(), headers.clone(), payload.into());
        let reply = match &self.inner.nats {
            // The same transport, called without boxing its future.
            Some(nats) => {
                nats.request_message(subject, headers, payload, left)
                    .await?
            }
            None => {
                let transport = &self.inner.transport;
                transport.request(subject, headers, payload, left).await?
            }
        };

        let led = match reply.headers.is_empty() {
            true => None,
            false => reply.headers.get(LEADER_HEADER).map(str::to_owned),
        };
        hot::decode_response(&reply.payload, message_id)
            .map(|result| (result, led))
            .map_err(|error| Refused {
                // A refusing standby names the leader it knows of, if any.
                leader: match error.kind() {
                    ErrorKind::NotActive => reply.headers.get(LEADER_HEADER).map(str::to_owned),
                    _ => None,
                },
                error,
            })
    }
}

impl<P, R> IntoFuture for Call<P, R>
where
    P: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    type Output = Result<R>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R>> + Send>>;

    fn into_future(mut self) -> Self::IntoFuture {
        let span = tracing::info_span!(
            "aegis.rpc.call",
            service = %self.service,
            method = %self.method,
            message_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let (service, method) = match self.names() {
            Ok(names) => names,
            Err(error) => return Box::pin(std::future::ready(Err(error)).instrument(span)),
        };
        let timing =
            metrics::op_if_enabled(OpKind::RpcClient, &[service.as_str(), method.as_str()]);
        Box::pin(metrics::observed(timing, self.send(service, method)).instrument(span))
    }
}
