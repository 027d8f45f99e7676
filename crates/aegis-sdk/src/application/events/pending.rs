//! The acknowledgement of a pipelined publish, which also re-creates a stream that
//! went away and retries once, and is never dropped silently.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::publisher::EventPublisher;
use crate::application::metrics::{Op, Outcome};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::events::{PendingAck, PublishReceipt};
use crate::ports::Headers;

/// The acknowledgement of an event sent with [`EventPublisher::send`]: await it for the
/// event's [`PublishReceipt`] (or why it was not stored).
///
/// Nothing is dropped silently: a `PendingEvent` dropped before it completed is still
/// awaited in the background, and a failure is logged at `warn` level.
#[must_use = "await the pending event to learn whether it was stored"]
pub struct PendingEvent {
    state: State,
    retry: Option<Retry>,
    /// Already awaited in the background after a drop: a second drop (the runtime
    /// shutting down) lets it go rather than spawn again.
    detached: bool,
    /// The metrics series timing this publish, when metrics are on.
    timing: Option<(Arc<Op>, Instant)>,
}

enum State {
    /// The first publish's acknowledgement.
    Waiting(PendingAck),
    /// The stream had gone: making it again and publishing once more.
    Retrying(BoxFuture<'static, Result<PublishReceipt>>),
    Done,
}

/// What a retry needs; the event id keeps a retry from storing the event twice.
pub(super) struct Retry {
    pub(super) publisher: EventPublisher,
    pub(super) subject: String,
    pub(super) headers: Headers,
    pub(super) payload: Bytes,
    pub(super) message_id: String,
}

impl Retry {
    async fn run(self) -> Result<PublishReceipt> {
        self.publisher.ensure(self.subject.clone()).await?;
        let ack = self
            .publisher
            .bus()
            .publish(self.subject, self.headers, self.payload, &self.message_id)
            .await?;
        ack.await
    }
}

impl PendingEvent {
    pub(super) fn new(ack: PendingAck, retry: Retry, timing: Option<(Arc<Op>, Instant)>) -> Self {
        PendingEvent {
            state: State::Waiting(ack),
            retry: Some(retry),
            detached: false,
            timing,
        }
    }

    /// The subject the event was sent to.
    pub fn subject(&self) -> &str {
        self.retry.as_ref().map_or("", |r| r.subject.as_str())
    }
}

impl Future for PendingEvent {
    type Output = Result<PublishReceipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let result = match &mut self.state {
                State::Waiting(ack) => futures::ready!(Pin::new(ack).poll(cx)),
                State::Retrying(retry) => futures::ready!(retry.as_mut().poll(cx)),
                State::Done => {
                    return Poll::Ready(Err(Error::new(
                        ErrorKind::Internal,
                        "pending event polled after completion",
                    )))
                }
            };
            match result {
                // The stream went away after we made sure of it: make it again and retry.
                Err(error) if error.kind() == ErrorKind::NotFound && self.retry.is_some() => {
                    let retry = self.retry.take().map(Retry::run);
                    if let Some(retry) = retry {
                        self.state = State::Retrying(retry.boxed());
                    }
                }
                result => {
                    self.state = State::Done;
                    if let Some((op, started)) = self.timing.take() {
                        op.finish(started, Outcome::of(&result));
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl fmt::Debug for PendingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingEvent")
            .field("subject", &self.subject())
            .field("done", &matches!(self.state, State::Done))
            .finish()
    }
}

impl Drop for PendingEvent {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Done);
        if self.detached || matches!(state, State::Done) {
            return;
        }
        let subject = self.subject().to_owned();
        let rest = PendingEvent {
            state,
            retry: self.retry.take(),
            detached: true,
            timing: self.timing.take(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = rest.await {
                        tracing::warn!(%subject, %error, "event publish failed, and nobody awaited it");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(%subject, "pending event dropped outside a runtime; its outcome is unknown");
            }
        }
    }
}
