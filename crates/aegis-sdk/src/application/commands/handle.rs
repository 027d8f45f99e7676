//! A sender's handle on one command: its progress as it happens, its outcome, cancel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

use crate::application::client::Client;
use crate::domain::command_status::{CommandStatus, Progress};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::commands::CommandStatusStore;
use crate::ports::Subscription;

/// After this long without any word on a command, its record is read once, in case
/// the outcome was missed (core messages can be lost over a reconnect).
const SILENCE_CHECK: Duration = Duration::from_secs(5);

/// A handle on a sent command. Progress and the outcome are pushed to it as they
/// happen (core NATS, no polling); dropping it leaves the command running.
pub struct CommandHandle {
    id: String,
    client: Client,
    store: Arc<dyn CommandStatusStore>,
    events: Subscription,
    watch: Option<BoxStream<'static, Result<CommandStatus>>>,
    finished: Option<CommandStatus>,
}

impl fmt::Debug for CommandHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandle")
            .field("id", &self.id)
            .field("finished", &self.finished.as_ref().map(|s| s.state))
            .finish_non_exhaustive()
    }
}

impl CommandHandle {
    pub(crate) fn new(
        client: Client,
        store: Arc<dyn CommandStatusStore>,
        id: String,
        events: Subscription,
    ) -> Self {
        CommandHandle {
            id,
            client,
            store,
            events,
            watch: None,
            finished: None,
        }
    }

    /// A handle on a command someone else sent: its outcome may be recorded already,
    /// so the record is watched as well as the live subjects.
    pub(crate) async fn attached(
        client: Client,
        store: Arc<dyn CommandStatusStore>,
        id: String,
        events: Subscription,
    ) -> Result<Self> {
        let watch = store.watch(&id).await?;
        let mut handle = CommandHandle::new(client, store, id, events);
        handle.watch = Some(watch);
        Ok(handle)
    }

    /// The command id (its `message_id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next progress report, or `None` once the command finished (then
    /// [`CommandHandle::result`] returns at once).
    pub async fn next_progress(&mut self) -> Option<Progress> {
        match self.next_event().await {
            Ok(progress) => progress,
            Err(error) => {
                tracing::debug!(command_id = %self.id, %error, "progress stream ended");
                None
            }
        }
    }

    /// Progress reports as a stream that ends when the command finishes.
    pub fn progress(&mut self) -> impl Stream<Item = Progress> + '_ {
        futures::stream::unfold(self, |handle| async move {
            handle.next_progress().await.map(|p| (p, handle))
        })
    }

    /// Waits until the command finished and returns its final record, whatever the
    /// outcome.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the connection closed first.
    pub async fn wait(&mut self) -> Result<CommandStatus> {
        while self.next_event().await?.is_some() {}
        self.finished
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "finished without a record"))
    }

    /// Waits for the outcome: the handler's result as an `R`. It waits as long as the
    /// command takes (also while no worker runs), so bound it with
    /// `tokio::time::timeout` if needed; the command is not affected by that.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`] when the command failed after its retries (the message is
    /// the handler's error); [`ErrorKind::Timeout`] when it ran past its timeout;
    /// [`ErrorKind::Cancelled`] when it was cancelled; [`ErrorKind::Decode`] when the
    /// result is not an `R`.
    pub async fn result<R: DeserializeOwned>(mut self) -> Result<R> {
        let status = self.wait().await?;
        let value = status
            .outcome()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "finished in a non-final state"))??;
        serde_json::from_value(value).map_err(|e| {
            Error::new(ErrorKind::Decode, format!("command result: {e}")).with_source(e)
        })
    }

    /// The command's current record.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it has none (expired).
    pub async fn status(&self) -> Result<CommandStatus> {
        self.client.command_status(&self.id).await
    }

    /// Asks for the command to be cancelled; see [`Client::cancel_command`]. The outcome
    /// then reports [`ErrorKind::Cancelled`] (unless the command finished first).
    ///
    /// # Errors
    /// As [`Client::cancel_command`].
    pub async fn cancel(&self) -> Result<()> {
        self.client.cancel_command(&self.id).await
    }

    /// The next progress report (`Some`) or the outcome (`None`, kept in `finished`).
    async fn next_event(&mut self) -> Result<Option<Progress>> {
        if self.finished.is_some() {
            return Ok(None);
        }
        loop {
            // Races: a live message (progress or outcome), a change of the record (for
            // attached handles), and a long silence after which the record is read once.
            tokio::select! {
                message = self.events.next() => {
                    let Some(message) = message else {
                        return Err(Error::new(ErrorKind::Closed, "the connection closed"));
                    };
                    if message.subject.ends_with(".progress") {
                        if let Ok(progress) = serde_json::from_slice::<Progress>(&message.payload) {
                            return Ok(Some(progress));
                        }
                    } else if message.subject.ends_with(".result") {
                        if let Ok(status) = serde_json::from_slice::<CommandStatus>(&message.payload) {
                            if self.finish(status) {
                                return Ok(None);
                            }
                        }
                    }
                }
                status = next_of(&mut self.watch) => match status {
                    Some(Ok(status)) => {
                        if self.finish(status) {
                            return Ok(None);
                        }
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "command status watch failed");
                        self.watch = None;
                    }
                    None => self.watch = None,
                },
                _ = tokio::time::sleep(SILENCE_CHECK) => {
                    if let Ok(Some(entry)) = self.store.get(&self.id).await {
                        if self.finish(entry.status) {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self, status: CommandStatus) -> bool {
        if status.state.is_terminal() && status.command_id == self.id {
            self.finished = Some(status);
            true
        } else {
            false
        }
    }
}

async fn next_of(
    watch: &mut Option<BoxStream<'static, Result<CommandStatus>>>,
) -> Option<Result<CommandStatus>> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}
