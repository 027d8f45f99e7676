//! A running subscription: takes deliveries off its consumer, runs the handler, and
//! settles each delivery (ack, redeliver after a backoff, or dead-letter).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::dead_letter::DeadLetters;
use super::handler::{EventContext, EventHandler, Outcome};
use super::naming::consumer_name;
use super::publisher::event_bus;
use super::stream::{ensure_stream, Use, EVENTS_STREAM};
use super::subscription::{DeliveryMode, Options, StartPolicy, ValidSubscription};
use crate::application::client::Client;
use crate::application::component::{ComponentContext, RunningComponent};
use crate::application::context::InstanceInfo;
use crate::application::metrics::{self, OpKind};
use crate::application::propagation;
use crate::error::Result;
use crate::ports::events::{ConsumerSpec, Delivery, EventBus, Settle, StartAt};

/// After a stop, events still arriving within this window are handed back at once.
const HAND_BACK_WINDOW: Duration = Duration::from_millis(50);

/// Everything the handler tasks of one subscription share.
struct Worker {
    handler: Arc<dyn EventHandler>,
    options: Options,
    instance: Arc<InstanceInfo>,
    client: Client,
    dead_letters: DeadLetters,
    consumer: String,
    /// The subscription's pattern (`order.*`): the metrics label of its deliveries, so
    /// that their series are bounded by the program's subscriptions, not by the event
    /// types that publishers choose.
    pattern: String,
}

/// Sets the streams and the consumer up and starts taking deliveries.
pub(crate) async fn start(
    subscription: &ValidSubscription,
    context: &ComponentContext,
) -> Result<Box<dyn RunningComponent>> {
    let bus = event_bus(context.client(), None)?;
    let options = subscription.options.clone();
    let filter = subscription.pattern.filter_subject();

    ensure_stream(&*bus, &options.stream.events_spec(), &filter, Use::Consume).await?;
    let dead_letter_subject = super::dead_letter::dead_letter_subject(&filter);
    ensure_stream(
        &*bus,
        &options.stream.dead_letter_spec(),
        &dead_letter_subject,
        Use::Publish,
    )
    .await?;

    let mode = subscription.mode;
    let consumer = consumer_name(
        context.service(),
        context.instance_id(),
        &subscription.pattern,
        mode,
        options.name.as_deref(),
    );
    let spec = ConsumerSpec {
        stream: EVENTS_STREAM.to_owned(),
        name: consumer.clone(),
        filter_subject: filter,
        start: match options.start {
            StartPolicy::New => StartAt::New,
            StartPolicy::First => StartAt::First,
            StartPolicy::Time(time) => StartAt::Time(time),
            StartPolicy::Sequence(sequence) => StartAt::Sequence(sequence),
        },
        ack_wait: options.ack_wait,
        max_ack_pending: options.max_ack_pending,
        inactive_threshold: match mode {
            DeliveryMode::Compete => None,
            DeliveryMode::Broadcast => Some(options.inactive_threshold),
        },
        prefetch: options.prefetch,
        description: format!("{}: {}", context.service(), subscription_line(subscription)),
    };
    let deliveries = bus.consume(spec).await?;
    tracing::debug!(%consumer, service = %context.service(), "event subscription started");

    let worker = Arc::new(Worker {
        handler: subscription.handler.clone(),
        options,
        instance: context.instance.clone(),
        client: context.client().clone(),
        dead_letters: DeadLetters {
            bus: bus.clone(),
            service: context.service().to_string(),
            instance: context.instance_id().to_string(),
            consumer: consumer.clone(),
        },
        consumer: consumer.clone(),
        pattern: subscription.pattern.as_str().to_owned(),
    });
    let (stop, stop_rx) = watch::channel(None);
    let task = tokio::spawn(worker.run(deliveries, stop_rx));
    Ok(Box::new(RunningSubscription {
        stop,
        task: Some(task),
        bus,
        consumer,
        mode,
    }))
}

fn subscription_line(subscription: &ValidSubscription) -> String {
    use crate::application::component::Component;
    subscription.describe()
}

impl Worker {
    /// Serves deliveries until the stop signal carries a drain deadline, then hands
    /// back what is buffered and lets running handlers finish until the deadline.
    async fn run(
        self: Arc<Self>,
        mut deliveries: BoxStream<'static, Delivery>,
        mut stop: watch::Receiver<Option<Instant>>,
    ) {
        let permits = Arc::new(Semaphore::new(self.options.concurrency));
        let mut running = JoinSet::new();

        'serve: loop {
            let delivery = loop {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(Option::is_some) => break 'serve,
                    // Reap finished handlers so the set stays as small as the work.
                    Some(_) = running.join_next(), if !running.is_empty() => continue,
                    delivery = deliveries.next() => break delivery,
                }
            };
            let Some(delivery) = delivery else {
                break 'serve;
            };
            // Handlers start in delivery order: with concurrency 1, one at a time, in
            // order. A stop while waiting hands this delivery back below.
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.ok(),
                _ = stop.wait_for(Option::is_some) => None,
            };
            match permit {
                Some(permit) => {
                    running.spawn(self.clone().handle(delivery, permit));
                }
                None => {
                    hand_back(&delivery).await;
                    break 'serve;
                }
            }
        }

        // Events already pulled to this instance would otherwise wait out their ack
        // timer before another instance gets them.
        let mut handed_back = 0;
        while handed_back < self.options.prefetch {
            match tokio::time::timeout(HAND_BACK_WINDOW, deliveries.next()).await {
                Ok(Some(delivery)) => {
                    hand_back(&delivery).await;
                    handed_back += 1;
                }
                _ => break,
            }
        }
        drop(deliveries);

        let deadline = stop
            .borrow()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let finished = tokio::time::timeout_at(deadline, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                consumer = %self.consumer,
                still_running = running.len(),
                "event handlers did not finish within the drain timeout; aborting them \
                 (their events are redelivered)"
            );
            running.shutdown().await;
        }
    }

    async fn handle(self: Arc<Self>, delivery: Delivery, _permit: OwnedSemaphorePermit) {
        let context = EventContext {
            instance: self.instance.clone(),
            client: self.client.clone(),
            subject: delivery.subject.clone(),
            stream_sequence: delivery.stream_sequence,
            attempt: delivery.attempt,
            headers: delivery.headers.clone(),
        };
        let trace = propagation::incoming(&delivery.headers, &delivery.payload);
        let mut tokens = delivery.subject.split('.').skip(1);
        let (domain, event_type) = (tokens.next().unwrap_or(""), tokens.next().unwrap_or(""));
        let span = tracing::info_span!(
            "aegis.event.handle",
            service = %self.instance.service,
            instance = %self.instance.instance_id,
            pattern = %self.pattern,
            domain,
            event_type,
            sequence = delivery.stream_sequence,
            attempt = delivery.attempt,
            message_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if !span.is_disabled() {
            if let Some((message_id, _)) = crate::domain::envelope::peek_ids(&delivery.payload) {
                span.record("message_id", message_id);
            }
        }
        let timing = metrics::op_if_enabled(
            OpKind::EventHandle,
            &[self.instance.service.as_str(), self.pattern.as_str()],
        )
        .map(|op| {
            let started = op.start();
            (op, started)
        });
        let handler = self.handler.clone();
        let payload = delivery.payload.clone();
        let work = propagation::continue_trace(trace, span, async move {
            handler.call(context, payload).await
        });
        tokio::pin!(work);

        // While the handler works, tell the server every half ack-wait, so the event is
        // not delivered again to someone else in the meantime.
        let period = self.options.ack_wait / 2;
        let mut keep_alive = tokio::time::interval_at(Instant::now() + period, period);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = keep_alive.tick() => settle(&delivery, Settle::InProgress).await,
            }
        };

        if let Some((op, started)) = timing {
            let result = match outcome {
                Outcome::Handled => metrics::Outcome::Ok,
                Outcome::Failed(_) | Outcome::Undecodable(_) => metrics::Outcome::Error,
            };
            op.finish(started, result);
        }
        match outcome {
            Outcome::Handled => settle(&delivery, Settle::Ack).await,
            Outcome::Undecodable(reason) => self.dead_letter(&delivery, &reason).await,
            Outcome::Failed(reason) if delivery.attempt >= self.options.max_deliveries => {
                self.dead_letter(&delivery, &reason).await;
            }
            Outcome::Failed(reason) => {
                let delay = self.backoff(delivery.attempt);
                tracing::debug!(
                    consumer = %self.consumer,
                    sequence = delivery.stream_sequence,
                    attempt = delivery.attempt,
                    %reason,
                    ?delay,
                    "event handler failed; redelivering after a backoff"
                );
                settle(&delivery, Settle::Nak(delay)).await;
            }
        }
    }

    /// The wait after the `attempt`-th failed delivery.
    fn backoff(&self, attempt: u64) -> Duration {
        let backoff = &self.options.backoff;
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        backoff
            .get(index)
            .or(backoff.last())
            .copied()
            .unwrap_or_default()
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        match self.dead_letters.send(delivery, reason).await {
            Ok(()) => {
                tracing::warn!(
                    consumer = %self.consumer,
                    subject = %delivery.subject,
                    sequence = delivery.stream_sequence,
                    attempts = delivery.attempt,
                    %reason,
                    "event moved to the dead letters"
                );
                settle(delivery, Settle::Term).await;
            }
            Err(error) => {
                // Keep the event rather than lose it: it comes back and we try again.
                tracing::warn!(consumer = %self.consumer, %error, "cannot store dead letter; redelivering");
                let delay = self.backoff(u64::MAX);
                settle(delivery, Settle::Nak(delay)).await;
            }
        }
    }
}

async fn hand_back(delivery: &Delivery) {
    settle(delivery, Settle::Nak(Duration::ZERO)).await;
}

async fn settle(delivery: &Delivery, how: Settle) {
    if let Err(error) = delivery.acker.settle(how).await {
        // The server delivers it again after its ack timer: at least once still holds.
        tracing::debug!(%error, sequence = delivery.stream_sequence, "cannot settle delivery");
    }
}

/// A started subscription.
struct RunningSubscription {
    stop: watch::Sender<Option<Instant>>,
    task: Option<JoinHandle<()>>,
    bus: Arc<dyn EventBus>,
    consumer: String,
    mode: DeliveryMode,
}

#[async_trait]
impl RunningComponent for RunningSubscription {
    async fn stop(mut self: Box<Self>, drain_timeout: Duration) {
        let _ = self
            .stop
            .send(Some(crate::application::clock::after(drain_timeout)));
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(consumer = %self.consumer, %error, "event loop ended abnormally");
            }
        }
        // A broadcast consumer belongs to this instance alone: nobody needs it now.
        if self.mode == DeliveryMode::Broadcast {
            if let Err(error) = self
                .bus
                .delete_consumer(EVENTS_STREAM, &self.consumer)
                .await
            {
                tracing::debug!(consumer = %self.consumer, %error, "cannot delete broadcast consumer; the server removes it when inactive");
            }
        }
    }
}

impl Drop for RunningSubscription {
    fn drop(&mut self) {
        // Dropped without `stop`: end the loop rather than leave it running unowned.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
