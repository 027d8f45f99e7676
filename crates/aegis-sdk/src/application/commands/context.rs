//! What a command handler receives besides the payload: who it runs for, a progress
//! reporter, and the cancellation signal.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::cancel::{CancelReason, CancelToken};
use crate::application::client::Client;
use crate::application::context::InstanceInfo;
use crate::domain::command_status::{progress_subject, Progress};
use crate::domain::{InstanceId, Priority, ServiceName};
use crate::error::{Error, Result};
use crate::ports::Headers;

/// The context of one run of a command, handed to its handler.
#[derive(Clone)]
pub struct CommandContext {
    pub(crate) instance: Arc<InstanceInfo>,
    pub(crate) client: Client,
    pub(crate) command: Arc<str>,
    pub(crate) command_id: Arc<str>,
    pub(crate) trace_id: Arc<str>,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) priority: Priority,
    pub(crate) attempt: u32,
    pub(crate) max_retries: u32,
    pub(crate) deadline: Instant,
    pub(crate) headers: Arc<Headers>,
    pub(crate) cancel: CancelToken,
    pub(crate) progress: Arc<watch::Sender<Option<Progress>>>,
}

impl fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandContext")
            .field("service", &self.instance.service)
            .field("command", &self.command)
            .field("command_id", &self.command_id)
            .field("priority", &self.priority)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl CommandContext {
    /// The service running the command.
    pub fn service(&self) -> &ServiceName {
        &self.instance.service
    }

    /// The instance running it.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance.instance_id
    }

    /// The command name.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The command id (its `message_id`).
    pub fn command_id(&self) -> &str {
        &self.command_id
    }

    /// The trace it belongs to.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The sender's instance id, if it sent one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Its priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Which run this is: 1 the first time, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many retries the sender allowed.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// When the command times out; the handler is cancelled then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The command's headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// A client on the service's connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the command was cancelled (by a sender, its timeout, or the worker
    /// stopping). A handler should return soon once it is.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.reason().is_some()
    }

    /// Resolves when the command is cancelled; use it in a `select!` beside the work.
    pub async fn cancelled(&self) -> CancelReason {
        self.cancel.cancelled().await
    }

    /// Reports progress to the sender at once (on `aegis.cmd.{id}.progress`, never
    /// through the work queue) and records it as the command's last progress.
    /// `percent` is clamped to 0..=100.
    ///
    /// # Errors
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) once the command is
    /// cancelled, so a handler can stop with `?`;
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when it cannot be sent.
    pub async fn progress(&self, percent: f64, message: impl Into<String>) -> Result<()> {
        if let Some(reason) = self.cancel.reason() {
            return Err(Error::new(
                crate::ErrorKind::Cancelled,
                format!("command {} was cancelled ({reason:?})", self.command_id),
            ));
        }
        let progress = Progress {
            percent: if percent.is_finite() {
                percent.clamp(0.0, 100.0)
            } else {
                0.0
            },
            message: message.into(),
        };
        let payload = serde_json::to_vec(&progress)
            .map_err(|e| Error::encode(format!("progress: {e}")).with_source(e))?;
        self.client
            .transport()
            .publish(
                progress_subject(&self.command_id),
                Headers::new(),
                payload.into(),
            )
            .await?;
        // The status writer picks up the latest value whenever it gets to it.
        self.progress.send_replace(Some(progress));
        Ok(())
    }
}
