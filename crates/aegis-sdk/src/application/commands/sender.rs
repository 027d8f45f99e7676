//! The sending side: send a command, look up its status, attach to it, cancel it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::handle::CommandHandle;
use super::ports::CommandPorts;
use tracing::Instrument;

use crate::application::client::Client;
use crate::application::metrics::{self, OpKind};
use crate::application::propagation;
use crate::domain::command_status::{self as cs, CommandState, CommandStatus};
use crate::domain::envelope::{new_id, Command};
use crate::domain::{subjects, MethodName, Priority, ServiceName};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::Headers;

impl Client {
    /// Sends `command` to `service` with `payload` (which must serialize to a map).
    /// Set priority, retries, timeout or the id on the returned [`SendCommand`], then
    /// await it to get a [`CommandHandle`]: the command is stored in the `COMMANDS` work
    /// queue by then. Drop the handle to fire and forget.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
    /// use aegis_sdk::Priority;
    /// use serde_json::{json, Value};
    /// use std::time::Duration;
    ///
    /// let mut handle = client
    ///     .send_command("batch-service", "process_batch", json!({"items": 100}))
    ///     .priority(Priority::High)
    ///     .timeout(Duration::from_secs(60))
    ///     .await?;
    /// while let Some(progress) = handle.next_progress().await {
    ///     tracing::info!(percent = progress.percent, message = %progress.message, "progress");
    /// }
    /// let summary: Value = handle.result().await?;
    /// # Ok(()) }
    /// ```
    pub fn send_command<P>(&self, service: &str, command: &str, payload: P) -> SendCommand<P>
    where
        P: Serialize + Send + 'static,
    {
        SendCommand {
            client: self.clone(),
            service: service.to_owned(),
            command: command.to_owned(),
            payload,
            priority: Priority::Normal,
            max_retries: Command::<Value>::DEFAULT_MAX_RETRIES,
            timeout: Duration::from_secs_f64(Command::<Value>::DEFAULT_TIMEOUT_SECS),
            id: None,
            headers: Headers::new(),
        }
    }

    /// The status of the command with `id`, as recorded by its sender and workers. Works
    /// from any process.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no command with this id is known (never sent, or its
    /// record expired after a day); [`ErrorKind::InvalidName`] for an id that cannot be one.
    pub async fn command_status(&self, id: &str) -> Result<CommandStatus> {
        cs::check_command_id(id)?;
        let ports = CommandPorts::of(self)?;
        match ports.store.get(id).await? {
            Some(entry) => Ok(entry.status),
            None => Err(Error::new(ErrorKind::NotFound, format!("no command {id}"))),
        }
    }

    /// A handle on the command with `id` sent by anyone: its progress from now on and
    /// its outcome.
    ///
    /// # Errors
    /// As [`Client::command_status`].
    pub async fn attach_command(&self, id: &str) -> Result<CommandHandle> {
        cs::check_command_id(id)?;
        let ports = CommandPorts::of(self)?;
        let events = self
            .transport()
            .subscribe(cs::events_subject(id), None)
            .await?;
        if ports.store.get(id).await?.is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("no command {id}")));
        }
        CommandHandle::attached(self.clone(), ports.store, id.to_owned(), events).await
    }

    /// Asks for the command with `id` to be cancelled: a queued command will not run, a
    /// running one has its handler cancelled; its senders get
    /// [`ErrorKind::Cancelled`]. A finished command stays as it is.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown id; [`ErrorKind::Connection`].
    pub async fn cancel_command(&self, id: &str) -> Result<()> {
        cs::check_command_id(id)?;
        let ports = CommandPorts::of(self)?;
        let cancel = || {
            self.transport().publish(
                cs::cancel_subject(id),
                Headers::new(),
                Bytes::from_static(b"{}"),
            )
        };
        cancel().await?;
        for _ in 0..8 {
            let Some(entry) = ports.store.get(id).await? else {
                return Err(Error::new(ErrorKind::NotFound, format!("no command {id}")));
            };
            match entry.status.state {
                CommandState::Queued => {
                    let mut status = entry.status.with_state(CommandState::Cancelled);
                    status.error = Some(format!("command {id} was cancelled before it ran"));
                    match ports.store.update(&status, entry.revision).await {
                        Ok(_) => {
                            announce(self, &status).await;
                            return Ok(());
                        }
                        Err(e) if e.kind() == ErrorKind::RevisionMismatch => continue,
                        Err(e) => return Err(e),
                    }
                }
                // A worker records `running` only after it listens for the cancel, so
                // this second request reaches it even if the first came too early.
                CommandState::Running => return cancel().await,
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Publishes a final record on `aegis.cmd.{id}.result` for everyone waiting on it.
pub(crate) async fn announce(client: &Client, status: &CommandStatus) {
    let payload = match serde_json::to_vec(status) {
        Ok(payload) => Bytes::from(payload),
        Err(error) => {
            tracing::warn!(%error, "cannot encode a command outcome");
            return;
        }
    };
    let subject = cs::result_subject(&status.command_id);
    if let Err(error) = client
        .transport()
        .publish(subject, Headers::new(), payload)
        .await
    {
        tracing::warn!(command_id = %status.command_id, %error, "cannot announce a command outcome");
    }
}

/// A command being prepared. Await it to send it.
#[must_use = "a command is not sent until it is awaited"]
pub struct SendCommand<P> {
    client: Client,
    service: String,
    command: String,
    payload: P,
    priority: Priority,
    max_retries: u32,
    timeout: Duration,
    id: Option<String>,
    headers: Headers,
}

impl<P: Serialize + Send + 'static> SendCommand<P> {
    /// Its priority (default normal).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// How many times a failed run is retried (default 3).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// How long one run may take before it is cancelled (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command id (default a new UUID v4). Sending an id again does not run the
    /// command again: the handle follows the first one.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a header to the command message.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The names, checked: the metrics' labels come from them, so that a name that
    /// cannot be sent to never becomes a series.
    fn names(&mut self) -> Result<(ServiceName, MethodName)> {
        let service = ServiceName::new(std::mem::take(&mut self.service))?;
        let command = MethodName::new(std::mem::take(&mut self.command))?;
        Ok((service, command))
    }

    async fn send(self, service: ServiceName, command: MethodName) -> Result<CommandHandle> {
        if self.timeout.is_zero() {
            return Err(Error::invalid_argument("command timeout must be > 0"));
        }
        self.headers.check()?;
        let id = self.id.unwrap_or_else(new_id);
        cs::check_command_id(&id)?;
        let payload = serde_json::to_value(&self.payload)
            .map_err(|e| Error::encode(format!("command payload: {e}")).with_source(e))?;
        if !payload.is_object() {
            return Err(Error::invalid_argument(
                "a command payload must serialize to a map",
            ));
        }
        let client = self.client;
        let ports = CommandPorts::of(&client)?;

        let trace = propagation::outgoing();
        let mut headers = self.headers;
        trace.inject(&mut headers);
        let trace = trace.trace;
        let mut envelope = Command::new(command.as_str(), payload);
        envelope.message_id = id.clone();
        envelope.trace_id = trace.envelope_trace_id();
        let span = tracing::Span::current();
        span.record("command_id", id.as_str());
        span.record("trace_id", envelope.trace_id.as_str());
        envelope.source = client.source().map(str::to_owned);
        envelope.target = Some(service.to_string());
        envelope.priority = self.priority;
        envelope.max_retries = self.max_retries;
        envelope.timeout = self.timeout.as_secs_f64();
        let bytes = client.encoding().encode(&envelope)?;

        // Listen before anything can answer.
        let events = client
            .transport()
            .subscribe(cs::events_subject(&id), None)
            .await?;

        // The record and the message are written at once (one round trip, not two).
        // Either one tells a second sender of the same id that it is one: the record
        // exists, or the queue deduplicated the message. A message sent again after the
        // queue's deduplication window is stored, but the worker that gets it finds
        // the record owned by the first message and skips it, and this handle hears
        // the first command's outcome, which is published under the same id.
        let queued = CommandStatus::queued(&id, service.as_str(), command.as_str(), self.priority);
        let subject = subjects::command(&service, &command);
        tracing::trace!(%subject, command_id = %id, "send command");
        let (created, queued_message) = tokio::join!(
            ports.store.create(&queued),
            ports.queue.enqueue(subject, &id, headers, bytes.into()),
        );
        let duplicate = match (&created, &queued_message) {
            (Err(e), _) if e.kind() == ErrorKind::AlreadyExists => true,
            (_, Ok(true)) => true,
            _ => false,
        };
        if duplicate {
            tracing::debug!(command_id = %id, "command sent before; following it");
            return CommandHandle::attached(client, ports.store, id, events).await;
        }
        if let Err(error) = queued_message {
            let mut failed = queued.with_state(CommandState::Failed);
            failed.error = Some(format!("the command could not be queued: {error}"));
            let _ = ports.store.put(&failed).await;
            return Err(error);
        }
        if let Err(error) = created {
            // The command is queued and will run; only its record is missing until a
            // worker writes one.
            tracing::warn!(command_id = %id, %error, "cannot record a queued command");
        }
        Ok(CommandHandle::new(client, ports.store, id, events))
    }
}

impl<P: Serialize + Send + 'static> IntoFuture for SendCommand<P> {
    type Output = Result<CommandHandle>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<CommandHandle>> + Send>>;

    fn into_future(mut self) -> Self::IntoFuture {
        let span = tracing::info_span!(
            "aegis.command.send",
            service = %self.service,
            command = %self.command,
            command_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let (service, command) = match self.names() {
            Ok(names) => names,
            Err(error) => return Box::pin(std::future::ready(Err(error)).instrument(span)),
        };
        let timing =
            metrics::op_if_enabled(OpKind::CommandSend, &[service.as_str(), command.as_str()]);
        Box::pin(metrics::observed(timing, self.send(service, command)).instrument(span))
    }
}
