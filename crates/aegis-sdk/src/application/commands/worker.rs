//! The command worker: a [`Component`] that takes one command of its service from the
//! shared work queue and runs its handler.
//!
//! # How priority works with a work queue
//!
//! Every worker of `{service}.{command}` pulls from one durable consumer filtered on
//! `commands.{service}.{command}`, so each command is delivered to one worker, and
//! commands sent by Python peers (which know nothing of lanes) are served the same way.
//! A worker holds up to `concurrency + lookahead` commands: those running and a waiting
//! room it picks from, most urgent first, with aging (see `priority.rs`). Held commands
//! are kept alive with in-progress acks every third of the ack wait, so a live worker
//! never loses one to redelivery however long it waits or runs; a crashed worker stops
//! renewing, and the server hands its commands to another worker after the ack wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::cancel::{CancelReason, CancelToken};
use super::execute::{execute, settle, Settle};
use super::handler::CommandHandler;
use super::options::WorkerOptions;
use super::ports::CommandPorts;
use super::priority::WaitQueue;
use crate::application::client::Client;
use crate::application::component::{Component, ComponentContext, RunningComponent};
use crate::application::context::InstanceInfo;
use crate::domain::command_status::{self as cs, CommandStatus};
use crate::domain::envelope::Command;
use crate::domain::MethodName;
use crate::error::Result;
use crate::ports::commands::{CommandQueue, CommandSource, CommandStatusStore, Delivery};
use crate::ports::{Headers, Subscription};

/// A command handler with its settings, to add to a service with
/// [`ServiceBuilder::component`](crate::ServiceBuilder::component) (or the
/// `on_command` shorthands).
pub struct CommandWorker {
    command: MethodName,
    options: WorkerOptions,
    handler: Arc<dyn CommandHandler>,
}

impl CommandWorker {
    pub(crate) fn new(
        command: MethodName,
        options: WorkerOptions,
        handler: Arc<dyn CommandHandler>,
    ) -> Self {
        CommandWorker {
            command,
            options,
            handler,
        }
    }
}

/// A command waiting in (or taken from) a worker's waiting room.
pub(crate) struct Held {
    pub(crate) delivery: Delivery,
    pub(crate) command: Command<Value>,
}

/// What the worker loop and its running commands share.
pub(crate) struct Shared {
    pub(crate) instance: Arc<InstanceInfo>,
    pub(crate) client: Client,
    pub(crate) command: Arc<str>,
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) store: Arc<dyn CommandStatusStore>,
    pub(crate) handler: Arc<dyn CommandHandler>,
    pub(crate) options: WorkerOptions,
    pub(crate) keepalive: Duration,
    cancels: Mutex<HashMap<String, CancelToken>>,
}

impl Shared {
    pub(crate) fn register(&self, id: &str, token: CancelToken) {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), token);
    }

    pub(crate) fn unregister(&self, id: &str) {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    fn cancel(&self, id: &str, reason: CancelReason) {
        let cancels = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = cancels.get(id) {
            token.cancel(reason);
        }
    }

    fn cancel_all(&self, reason: CancelReason) {
        let cancels = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        for token in cancels.values() {
            token.cancel(reason);
        }
    }

    /// Tells anyone waiting for the command its final record, on the core subject
    /// `aegis.cmd.{id}.result`.
    pub(crate) async fn announce(&self, status: &CommandStatus) {
        super::sender::announce(&self.client, status).await;
    }

    pub(crate) async fn dead_letter(
        &self,
        subject: &str,
        payload: &Bytes,
        reason: &str,
        id: Option<&str>,
        attempts: u32,
    ) {
        let mut headers = Headers::new();
        // Header values are single lines.
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        headers.insert(cs::HEADER_DLQ_REASON, reason.as_str());
        headers.insert(cs::HEADER_ATTEMPTS, attempts.to_string());
        if let Some(id) = id {
            headers.insert(cs::HEADER_COMMAND_ID, id);
            headers.insert(cs::HEADER_MSG_ID, format!("dlq-{id}"));
        }
        let dlq = cs::dead_letter_subject(subject);
        match self.queue.dead_letter(dlq, headers, payload.clone()).await {
            Ok(()) => tracing::warn!(command_id = ?id, %reason, "command dead-lettered"),
            Err(error) => tracing::error!(command_id = ?id, %error, "cannot dead-letter a command"),
        }
    }

    /// Puts a delivery in the waiting room, or dead-letters it when it is not a command.
    fn admit(self: &Arc<Self>, delivery: Delivery, waiting: &mut WaitQueue<Held>) {
        let decoded = Command::<Value>::decode(&delivery.payload)
            .and_then(|c| cs::check_command_id(&c.message_id).map(|()| c));
        match decoded {
            Ok(command) => waiting.push(command.priority, Held { delivery, command }),
            Err(error) => {
                let shared = self.clone();
                tokio::spawn(async move {
                    let reason = format!("INVALID_REQUEST: {error}");
                    let attempts = u32::try_from(delivery.delivered).unwrap_or(u32::MAX);
                    shared
                        .dead_letter(
                            &delivery.subject,
                            &delivery.payload,
                            &reason,
                            None,
                            attempts,
                        )
                        .await;
                    settle(&*delivery.acker, "?", Settle::Ack).await;
                });
            }
        }
    }
}

#[async_trait]
impl Component for CommandWorker {
    fn describe(&self) -> String {
        format!(
            "command {} concurrency {}",
            self.command, self.options.concurrency
        )
    }

    async fn start(&self, context: &ComponentContext) -> Result<Box<dyn RunningComponent>> {
        let ports = CommandPorts::of(context.client())?;
        let source = ports
            .queue
            .source(context.service(), &self.command, self.options.ack_wait)
            .await?;
        let cancels = context
            .client()
            .transport()
            .subscribe(cs::CANCEL_WILDCARD.to_owned(), None)
            .await?;
        let keepalive = (source.ack_wait() / 3).max(Duration::from_millis(100));
        let shared = Arc::new(Shared {
            instance: context.instance.clone(),
            client: context.client().clone(),
            command: Arc::from(self.command.as_str()),
            queue: ports.queue,
            store: ports.store,
            handler: self.handler.clone(),
            options: self.options.clone(),
            keepalive,
            cancels: Mutex::new(HashMap::new()),
        });
        let (stop, stop_rx) = watch::channel(None);
        let router = tokio::spawn(route_cancels(shared.clone(), cancels));
        let main = tokio::spawn(work(shared, source, stop_rx));
        tracing::debug!(command = %self.command, "command worker started");
        Ok(Box::new(RunningWorker {
            stop,
            main: Some(main),
            router: Some(router),
        }))
    }
}

struct RunningWorker {
    stop: watch::Sender<Option<Duration>>,
    main: Option<JoinHandle<()>>,
    router: Option<JoinHandle<()>>,
}

#[async_trait]
impl RunningComponent for RunningWorker {
    async fn stop(mut self: Box<Self>, drain_timeout: Duration) {
        let _ = self.stop.send(Some(drain_timeout));
        if let Some(main) = self.main.take() {
            if let Err(error) = main.await {
                tracing::warn!(%error, "command worker ended abnormally");
            }
        }
        if let Some(router) = self.router.take() {
            router.abort();
            let _ = router.await;
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        // Dropped without `stop` (its service was dropped): end the loop and, with it,
        // the commands it runs; their deliveries go to another worker after the ack wait.
        for task in [self.main.take(), self.router.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

async fn route_cancels(shared: Arc<Shared>, mut cancels: Subscription) {
    while let Some(message) = cancels.next().await {
        if let Some(id) = message.subject.split('.').nth(2) {
            shared.cancel(id, CancelReason::Requested);
        }
    }
}

async fn next_of(
    batch: &mut Option<BoxStream<'static, Result<Delivery>>>,
) -> Option<Result<Delivery>> {
    match batch {
        Some(batch) => batch.next().await,
        None => std::future::pending().await,
    }
}

/// The worker loop: keep the waiting room filled up to the look-ahead, start the most
/// urgent command whenever a slot is free, renew the held ones.
async fn work(
    shared: Arc<Shared>,
    source: Arc<dyn CommandSource>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let options = shared.options.clone();
    let capacity = options.concurrency + options.lookahead;
    let min_pull = (capacity / 4).max(1);
    let mut waiting = WaitQueue::new(options.priority_aging);
    let mut running = JoinSet::new();
    let mut batch: Option<BoxStream<'static, Result<Delivery>>> = None;
    let mut keepalive = tokio::time::interval(shared.keepalive);
    let mut failures = 0u32;

    let drain_timeout = loop {
        while running.len() < options.concurrency {
            match waiting.pop() {
                Some(held) => {
                    running.spawn(execute(shared.clone(), held));
                }
                None => break,
            }
        }
        // Pull in batches of a quarter of the capacity at least (each pull request costs
        // the server as much as a few messages), unless the worker is idle.
        let held = running.len() + waiting.len();
        let room = capacity.saturating_sub(held);
        if batch.is_none() && room > 0 && (held == 0 || room >= min_pull) {
            match source.pull(room, options.pull_expires).await {
                Ok(stream) => {
                    batch = Some(stream);
                    failures = 0;
                }
                Err(error) => {
                    failures += 1;
                    let delay = Duration::from_millis(100 * 2u64.pow(failures.min(5)));
                    tracing::debug!(%error, ?delay, "pulling commands failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => break stop.borrow().unwrap_or_default(),
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            }
        }

        // Races: a stop request, a running command finishing (a slot frees), a new
        // delivery, the keep-alive tick for the waiting room.
        tokio::select! {
            _ = stop.changed() => break stop.borrow().unwrap_or_default(),
            joined = running.join_next(), if !running.is_empty() => {
                if let Some(Err(error)) = joined {
                    tracing::warn!(%error, "a command task ended abnormally");
                }
            }
            next = next_of(&mut batch) => match next {
                Some(Ok(delivery)) => {
                    shared.admit(delivery, &mut waiting);
                    // Take in whatever else already arrived before choosing, so a burst
                    // is ranked as a whole.
                    while let Some(stream) = batch.as_mut() {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(delivery))) => shared.admit(delivery, &mut waiting),
                            Some(Some(Err(_))) | Some(None) => batch = None,
                            None => break,
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "command pull ended with an error");
                    batch = None;
                }
                None => batch = None,
            },
            _ = keepalive.tick() => {
                for held in waiting.iter() {
                    if let Err(error) = held.delivery.acker.in_progress().await {
                        tracing::debug!(%error, "keep-alive of a waiting command failed");
                    }
                }
            }
        }
    };

    shutdown(&shared, batch, waiting, running, drain_timeout).await;
}

/// Hands held commands back, lets running ones finish within `drain_timeout`, then
/// cancels them, and drops what still runs after the cancel grace.
async fn shutdown(
    shared: &Arc<Shared>,
    batch: Option<BoxStream<'static, Result<Delivery>>>,
    mut waiting: WaitQueue<Held>,
    mut running: JoinSet<()>,
    drain_timeout: Duration,
) {
    // Commands still on their way from an open pull request go back at once rather
    // than after the ack wait.
    if let Some(mut batch) = batch {
        let limit = shared.options.pull_expires + Duration::from_millis(200);
        let _ = tokio::time::timeout(limit, async {
            while let Some(next) = batch.next().await {
                if let Ok(delivery) = next {
                    settle(&*delivery.acker, "?", Settle::Retry(Duration::ZERO)).await;
                }
            }
        })
        .await;
    }
    for held in waiting.drain() {
        settle(
            &*held.delivery.acker,
            &held.command.message_id,
            Settle::Retry(Duration::ZERO),
        )
        .await;
    }

    let drained = tokio::time::timeout(drain_timeout, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        shared.cancel_all(CancelReason::Stopping);
        let grace = shared.options.cancel_grace + Duration::from_secs(1);
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            running.shutdown().await;
        }
    }
    tracing::debug!(command = %shared.command, "command worker stopped");
}
