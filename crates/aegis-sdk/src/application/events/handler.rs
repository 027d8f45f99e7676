//! Event handlers: the context they get, and typed handlers behind one object-safe trait.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;

use crate::application::client::Client;
use crate::application::context::{HandlerError, InstanceInfo};
use crate::application::handler::panic_message;
use crate::domain::{Event, InstanceId, ServiceName};
use crate::ports::Headers;

/// The context of one event delivery, handed to its handler.
#[derive(Clone)]
pub struct EventContext {
    pub(crate) instance: Arc<InstanceInfo>,
    pub(crate) client: Client,
    pub(crate) subject: String,
    pub(crate) stream_sequence: u64,
    pub(crate) attempt: u64,
    pub(crate) headers: Headers,
}

impl fmt::Debug for EventContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventContext")
            .field("service", &self.instance.service)
            .field("instance_id", &self.instance.instance_id)
            .field("subject", &self.subject)
            .field("stream_sequence", &self.stream_sequence)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl EventContext {
    /// The service handling the event.
    pub fn service(&self) -> &ServiceName {
        &self.instance.service
    }

    /// The instance handling the event.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance.instance_id
    }

    /// The subject the event was published to (`events.{domain}.{event_type}`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The event's sequence in the `EVENTS` stream.
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// Which delivery this is: 1 the first time, higher when it is redelivered.
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// The message headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// A client on the service's connection, naming this instance as `source`.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// How handling one delivery ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Handled,
    /// The handler failed or panicked: try again later.
    Failed(String),
    /// The bytes are no event of the expected type: trying again cannot help.
    Undecodable(String),
}

/// An event handler with its payload type erased.
pub(crate) trait EventHandler: Send + Sync + 'static {
    fn call(&self, context: EventContext, payload: Bytes) -> BoxFuture<'static, Outcome>;
}

/// A handler written as an async function of (context, event).
pub(crate) struct TypedEventHandler<F, T> {
    function: F,
    _payload: PhantomData<fn(T)>,
}

impl<F, T> TypedEventHandler<F, T> {
    pub(crate) fn new(function: F) -> Self {
        TypedEventHandler {
            function,
            _payload: PhantomData,
        }
    }
}

impl<F, Fut, T> EventHandler for TypedEventHandler<F, T>
where
    F: Fn(EventContext, Event<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
{
    fn call(&self, context: EventContext, payload: Bytes) -> BoxFuture<'static, Outcome> {
        let event = match Event::<T>::decode(&payload) {
            Ok(event) => event,
            Err(error) => {
                let reason = format!("DECODE: {}", error.message());
                return futures::future::ready(Outcome::Undecodable(reason)).boxed();
            }
        };
        // Calling the function may itself panic before it returns a future.
        let future =
            match std::panic::catch_unwind(AssertUnwindSafe(|| (self.function)(context, event))) {
                Ok(future) => future,
                Err(panic) => {
                    let reason = format!("handler panicked: {}", panic_message(&*panic));
                    return futures::future::ready(Outcome::Failed(reason)).boxed();
                }
            };
        async move {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(())) => Outcome::Handled,
                Ok(Err(error)) => Outcome::Failed(error.to_wire()),
                Err(panic) => {
                    Outcome::Failed(format!("handler panicked: {}", panic_message(&*panic)))
                }
            }
        }
        .boxed()
    }
}
