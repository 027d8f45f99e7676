//! Event subscriptions: what a service listens to, in which mode, with which options.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use super::handler::{EventContext, EventHandler, TypedEventHandler};
use super::stream::EventStreamConfig;
use super::worker;
use crate::application::component::{Component, ComponentContext, RunningComponent};
use crate::application::context::HandlerError;
use crate::application::service::ServiceBuilder;
use crate::domain::event_pattern::EventPattern;
use crate::domain::Event;
use crate::error::{Error, Result};

/// Who gets an event among the instances of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Each event is handled by exactly one instance (a consumer shared by all).
    Compete,
    /// Each event is handled by every instance (a consumer per instance).
    Broadcast,
}

impl DeliveryMode {
    /// `compete` or `broadcast`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Compete => "compete",
            DeliveryMode::Broadcast => "broadcast",
        }
    }
}

/// Where a subscription starts when its consumer is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPolicy {
    /// Only events published after it was created (the default): no history replay.
    #[default]
    New,
    /// Every event still in the stream.
    First,
    /// Events published at or after this time.
    Time(SystemTime),
    /// Events from this stream sequence on.
    Sequence(u64),
}

/// How a subscription consumes; every default is stated on its setter.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) concurrency: usize,
    pub(crate) max_deliveries: u64,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) ack_wait: Duration,
    pub(crate) prefetch: usize,
    pub(crate) max_ack_pending: usize,
    pub(crate) start: StartPolicy,
    pub(crate) inactive_threshold: Duration,
    pub(crate) name: Option<String>,
    pub(crate) stream: EventStreamConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 1,
            max_deliveries: EventSubscription::DEFAULT_MAX_DELIVERIES,
            backoff: EventSubscription::DEFAULT_BACKOFF.to_vec(),
            ack_wait: EventSubscription::DEFAULT_ACK_WAIT,
            prefetch: EventSubscription::DEFAULT_PREFETCH,
            max_ack_pending: EventSubscription::DEFAULT_MAX_ACK_PENDING,
            start: StartPolicy::New,
            inactive_threshold: EventSubscription::DEFAULT_INACTIVE_THRESHOLD,
            name: None,
            stream: EventStreamConfig::default(),
        }
    }
}

/// An event subscription of a service: a pattern relative to `events.` (`order.*`), a
/// [`DeliveryMode`], a typed handler and options. Add it with
/// [`ServiceBuilder::events`] or use the shorthand [`ServiceBuilder::on_event`].
///
/// Delivery is at least once. A handler error or panic means redelivery after a
/// backoff; after [`max_deliveries`](Self::max_deliveries) the event goes to the dead
/// letters (see [`dead_letter`](super::dead_letter)) and is settled so it blocks
/// nothing. An event that cannot be decoded goes there at once.
///
/// Events wait in a prefetch buffer of [`prefetch`](Self::prefetch) events per
/// instance; their acknowledgement timer runs while they wait, so a handler much
/// slower than `ack_wait / prefetch` should come with a smaller prefetch.
///
/// # Examples
/// ```
/// use aegis_sdk::application::events::{DeliveryMode, EventContext, EventSubscription};
/// use aegis_sdk::domain::Event;
/// use aegis_sdk::{HandlerError, Service};
/// use serde_json::Value;
///
/// let service = Service::builder("billing")
///     .events(
///         EventSubscription::new("order.*", DeliveryMode::Compete, |_ctx: EventContext, event: Event<Value>| async move {
///             let _ = event.payload;
///             Ok::<_, HandlerError>(())
///         })
///         .concurrency(4)
///         .max_deliveries(3),
///     )
///     .build()
///     .unwrap();
/// # let _ = service;
/// ```
#[must_use]
pub struct EventSubscription {
    pattern: Result<EventPattern>,
    mode: DeliveryMode,
    handler: Arc<dyn EventHandler>,
    options: Options,
}

impl EventSubscription {
    /// The default number of deliveries before an event goes to the dead letters.
    pub const DEFAULT_MAX_DELIVERIES: u64 = 5;
    /// The default waits before redeliveries: the n-th failure waits the n-th entry,
    /// later ones the last.
    pub const DEFAULT_BACKOFF: [Duration; 3] = [
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(5),
    ];
    /// The default time a delivery may go unacknowledged before the server delivers it
    /// again (a running handler keeps extending it).
    pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
    /// The default number of events an instance buffers ahead of its handlers.
    pub const DEFAULT_PREFETCH: usize = 64;
    /// The default cap of unacknowledged events across all instances of a consumer.
    pub const DEFAULT_MAX_ACK_PENDING: usize = 1000;
    /// The default time after which the server removes the consumer of a broadcast
    /// instance that went away without stopping.
    pub const DEFAULT_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

    /// A subscription to `pattern` (relative to `events.`) in `mode`, handled by
    /// `handler`. An invalid pattern is reported by [`ServiceBuilder::build`].
    pub fn new<F, Fut, T>(pattern: &str, mode: DeliveryMode, handler: F) -> Self
    where
        F: Fn(EventContext, Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        EventSubscription {
            pattern: EventPattern::new(pattern),
            mode,
            handler: Arc::new(TypedEventHandler::new(handler)),
            options: Options::default(),
        }
    }

    /// How many events are handled at once by this instance (default 1: one at a time,
    /// in delivery order). At least 1.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.options.concurrency = limit.max(1);
        self
    }

    /// How many deliveries are tried before the event goes to the dead letters (default
    /// [`DEFAULT_MAX_DELIVERIES`](Self::DEFAULT_MAX_DELIVERIES)). At least 1.
    pub fn max_deliveries(mut self, deliveries: u64) -> Self {
        self.options.max_deliveries = deliveries.max(1);
        self
    }

    /// The waits before redeliveries after failures (default
    /// [`DEFAULT_BACKOFF`](Self::DEFAULT_BACKOFF)); empty means redeliver at once.
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.options.backoff = delays.into_iter().collect();
        self
    }

    /// How long a delivery may go unacknowledged (default
    /// [`DEFAULT_ACK_WAIT`](Self::DEFAULT_ACK_WAIT)); a running handler reports progress
    /// every half of it, so it is not redelivered while it works. At least 1 s.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.options.ack_wait = wait.max(Duration::from_secs(1));
        self
    }

    /// How many events this instance buffers ahead of its handlers (default
    /// [`DEFAULT_PREFETCH`](Self::DEFAULT_PREFETCH)). At least 1.
    pub fn prefetch(mut self, events: usize) -> Self {
        self.options.prefetch = events.max(1);
        self
    }

    /// The cap of unacknowledged events across all users of the consumer (default
    /// [`DEFAULT_MAX_ACK_PENDING`](Self::DEFAULT_MAX_ACK_PENDING)).
    pub fn max_ack_pending(mut self, events: usize) -> Self {
        self.options.max_ack_pending = events.max(1);
        self
    }

    /// Where the subscription starts when its consumer is created (default
    /// [`StartPolicy::New`]). A compete consumer is created by the first instance and
    /// then shared, so this matters once; a broadcast instance creates its own each time
    /// it starts.
    pub fn start_at(mut self, start: StartPolicy) -> Self {
        self.options.start = start;
        self
    }

    /// For broadcast: how long the consumer of an instance that went away without
    /// stopping survives (default
    /// [`DEFAULT_INACTIVE_THRESHOLD`](Self::DEFAULT_INACTIVE_THRESHOLD)). A stopped
    /// instance deletes its consumer at once. At least 1 s.
    pub fn inactive_threshold(mut self, threshold: Duration) -> Self {
        self.options.inactive_threshold = threshold.max(Duration::from_secs(1));
        self
    }

    /// A name that tells this subscription's consumer apart, for a service with two
    /// subscriptions to the same pattern in the same mode (default: derived from the
    /// pattern). Letters, digits, `_` and `-`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.options.name = Some(name.into());
        self
    }

    /// How the streams are created when missing (default [`EventStreamConfig::default`]).
    pub fn stream_config(mut self, config: EventStreamConfig) -> Self {
        self.options.stream = config;
        self
    }

    fn validate(self) -> Result<ValidSubscription> {
        let pattern = self.pattern?;
        if let Some(name) = &self.options.name {
            crate::domain::InstanceId::new(name.clone()).map_err(|_| {
                Error::new(
                    crate::ErrorKind::InvalidName,
                    format!(
                        "invalid subscription name {name:?}: letters, digits, '_' and '-' only"
                    ),
                )
            })?;
        }
        Ok(ValidSubscription {
            pattern,
            mode: self.mode,
            handler: self.handler,
            options: self.options,
        })
    }
}

/// A subscription whose pattern and name were checked: the [`Component`].
pub(crate) struct ValidSubscription {
    pub(crate) pattern: EventPattern,
    pub(crate) mode: DeliveryMode,
    pub(crate) handler: Arc<dyn EventHandler>,
    pub(crate) options: Options,
}

#[async_trait]
impl Component for ValidSubscription {
    fn describe(&self) -> String {
        match &self.options.name {
            Some(name) => format!("events {} {} name={name}", self.pattern, self.mode.as_str()),
            None => format!("events {} {}", self.pattern, self.mode.as_str()),
        }
    }

    async fn start(&self, context: &ComponentContext) -> Result<Box<dyn RunningComponent>> {
        let me = self.describe();
        if context.descriptions().iter().filter(|d| **d == me).count() > 1 {
            return Err(Error::invalid_argument(format!(
                "service {} has two subscriptions `{me}`; they would share one consumer: \
                 give one a distinct name",
                context.service()
            )));
        }
        worker::start(self, context).await
    }
}

impl ServiceBuilder {
    /// Adds an event subscription (see [`EventSubscription`] for its options).
    pub fn events(self, subscription: EventSubscription) -> Self {
        match subscription.validate() {
            Ok(valid) => self.component(valid),
            Err(error) => self.invalid(error),
        }
    }

    /// Subscribes to `pattern` (relative to `events.`: `order.created`, `order.*`,
    /// `order.>`, `*.created`) in `mode`, with default options.
    ///
    /// # Examples
    /// ```
    /// use aegis_sdk::application::events::{DeliveryMode, EventContext};
    /// use aegis_sdk::domain::Event;
    /// use aegis_sdk::{HandlerError, Service};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct OrderCreated { order_id: String }
    ///
    /// let service = Service::builder("shipping")
    ///     .on_event("order.created", DeliveryMode::Compete, |_ctx: EventContext, event: Event<OrderCreated>| async move {
    ///         let _ = event.payload.order_id;
    ///         Ok::<_, HandlerError>(())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = service;
    /// ```
    pub fn on_event<F, Fut, T>(self, pattern: &str, mode: DeliveryMode, handler: F) -> Self
    where
        F: Fn(EventContext, Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        self.events(EventSubscription::new(pattern, mode, handler))
    }
}
