//! Watches and listings of a NATS KV bucket, on ordered push consumers of our own.
//!
//! async-nats' own watch hides the headers, so it cannot tell an expiry (a marker with
//! `Nats-Marker-Reason: MaxAge`) from a purge, and it gives up when its consumer cannot
//! be recreated. Here a task owns the consumer, remembers the last revision it handed
//! out, and after any error or end re-creates the consumer from that revision plus one.
//! It feeds a bounded channel: when the program stops reading, the task waits, and the
//! consumer is recreated from the right place once it reads again. Revisions only grow
//! along a watch, so anything at or below the last one handed out is dropped: nothing is
//! missed and nothing is repeated.

use std::time::Duration;

use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};

use super::kv::NatsKvStore;
use crate::error::{Error, Result};
use crate::ports::kv::{KvChange, KvOperation, KvWatch, WatchStart, WatchTarget};
use crate::ports::{ConnectionEvent, Transport};

/// Changes buffered between the watch task and the reader.
const WATCH_BUFFER: usize = 256;
/// How long a listing waits for the next entry before it assumes the rest expired.
const LISTING_IDLE: Duration = Duration::from_secs(2);
/// The longest pause between attempts to re-create a watch consumer.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(super) fn to_chrono(time: async_nats::datetime::DateTime) -> DateTime<Utc> {
    let nanos = time.unix_timestamp_nanos();
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// The consumer's subject filter for `target`, and the string prefix keys must also
/// start with (a prefix need not end on a token boundary; the filter does).
fn filter_for(store: &NatsKvStore, target: &WatchTarget) -> (String, Option<String>) {
    let base = &store.inner.prefix;
    match target {
        WatchTarget::Key(key) => (format!("{base}{key}"), None),
        WatchTarget::Prefix(prefix) => match prefix.rfind('.') {
            Some(dot) => (
                format!("{base}{}>", &prefix[..=dot]),
                Some(prefix.clone()).filter(|p| !p.ends_with('.')),
            ),
            None => (
                format!("{base}>"),
                Some(prefix.clone()).filter(|p| !p.is_empty()),
            ),
        },
    }
}

/// Parses one delivered message; `None` for one that is not a KV record.
fn parse(store: &NatsKvStore, message: &async_nats::jetstream::Message) -> Option<KvChange> {
    let info = message.info().ok()?;
    let key = message.subject.as_str().strip_prefix(&store.inner.prefix)?;
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let operation = match (
        header("KV-Operation").as_deref(),
        header("Nats-Marker-Reason"),
    ) {
        (Some("DEL"), _) => KvOperation::Delete,
        (Some("PURGE"), _) => KvOperation::Purge,
        (_, Some(reason)) if reason == "MaxAge" => KvOperation::Expired,
        (_, Some(reason)) if reason == "Remove" => KvOperation::Delete,
        (_, Some(_)) => KvOperation::Purge,
        _ => KvOperation::Put,
    };
    Some(KvChange {
        key: key.to_owned(),
        revision: info.stream_sequence,
        value: match operation {
            KvOperation::Put => message.payload.clone(),
            _ => Bytes::new(),
        },
        operation,
        created: to_chrono(info.published),
        pending: info.pending,
    })
}

/// Creates an ordered consumer; returns its messages and whether it had nothing pending.
async fn consumer(
    store: &NatsKvStore,
    filter: &str,
    policy: DeliverPolicy,
    headers_only: bool,
) -> Result<(Ordered, bool, u64)> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::new(
            store.failure_kind(),
            format!(
                "cannot consume bucket {} ({filter}): {e}",
                store.inner.bucket
            ),
        )
    };
    let consumer = store
        .inner
        .store
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: store.inner.client.new_inbox(),
            description: Some("aegis kv consumer".to_owned()),
            filter_subject: filter.to_owned(),
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: policy,
            headers_only,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(&e).with_source(e))?;
    let info = consumer.cached_info();
    let (nothing_pending, delivered) = (info.num_pending == 0, info.delivered.stream_sequence);
    let messages = consumer
        .messages()
        .await
        .map_err(|e| failed(&e).with_source(e))?;
    Ok((messages, nothing_pending, delivered))
}

/// Reads a consumer to its end: until a message says nothing is pending, or (entries
/// expiring while we read) nothing arrives for a while.
async fn drain(store: &NatsKvStore, mut messages: Ordered) -> Result<Vec<KvChange>> {
    let mut changes = Vec::new();
    loop {
        match tokio::time::timeout(LISTING_IDLE, messages.next()).await {
            Err(_) | Ok(None) => return Ok(changes),
            Ok(Some(Err(e))) => {
                return Err(Error::new(
                    store.failure_kind(),
                    format!("listing bucket {} failed: {e}", store.inner.bucket),
                )
                .with_source(e))
            }
            Ok(Some(Ok(message))) => {
                if let Some(change) = parse(store, &message) {
                    let done = change.pending == 0;
                    changes.push(change);
                    if done {
                        return Ok(changes);
                    }
                }
            }
        }
    }
}

/// The latest record of every key starting with `prefix`, deletes included, by key.
pub(super) async fn latest_per_key(
    store: &NatsKvStore,
    prefix: &str,
    headers_only: bool,
) -> Result<Vec<KvChange>> {
    let target = WatchTarget::Prefix(prefix.to_owned());
    let (filter, keep) = filter_for(store, &target);
    let mut changes = match super::kv_batch::last_per_subject(store, &filter).await? {
        Some(changes) => changes,
        None => {
            let (messages, empty, _) =
                consumer(store, &filter, DeliverPolicy::LastPerSubject, headers_only).await?;
            if empty {
                return Ok(Vec::new());
            }
            drain(store, messages).await?
        }
    };
    changes.retain(|c| keep.as_ref().is_none_or(|p| c.key.starts_with(p)));
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(changes)
}

/// Every stored record of `key`, oldest first.
pub(super) async fn all_changes(store: &NatsKvStore, key: &str) -> Result<Vec<KvChange>> {
    let (filter, _) = filter_for(store, &WatchTarget::Key(key.to_owned()));
    let (messages, empty, _) = consumer(store, &filter, DeliverPolicy::All, false).await?;
    if empty {
        return Ok(Vec::new());
    }
    drain(store, messages).await
}

/// Starts a watch. The first consumer is created here so that its errors reach the
/// caller; later ones are the task's business.
pub(super) async fn watch(
    store: NatsKvStore,
    target: WatchTarget,
    start: WatchStart,
) -> Result<KvWatch> {
    let (filter, keep) = filter_for(&store, &target);
    // Subscribed before the consumer exists, so that no reconnect goes unnoticed.
    let events = store.inner.transport.connection_events();
    let policy = match start {
        WatchStart::CurrentValues => DeliverPolicy::LastPerSubject,
        _ => DeliverPolicy::New,
    };
    let (messages, nothing_pending, delivered) = consumer(&store, &filter, policy, false).await?;

    // A consumer of new changes starts after the stream's last message: that is where a
    // re-created one must start too, even if nothing was delivered before.
    let last = match start {
        WatchStart::CurrentValues => 0,
        _ => delivered,
    };
    let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
    let task = WatchTask {
        store,
        filter,
        keep,
        initial: policy,
        last,
        sender,
        events,
    };
    let handle = tokio::spawn(task.run(messages));
    Ok(KvWatch::new(
        ChangeStream {
            receiver,
            task: handle,
        },
        nothing_pending,
    ))
}

struct WatchTask {
    store: NatsKvStore,
    filter: String,
    keep: Option<String>,
    initial: DeliverPolicy,
    /// The highest revision delivered so far (or skipped as not ours).
    last: u64,
    sender: mpsc::Sender<KvChange>,
    events: broadcast::Receiver<ConnectionEvent>,
}

impl WatchTask {
    async fn run(mut self, mut messages: Ordered) {
        loop {
            // Deliver until the consumer fails or ends, or the connection came back. A
            // reconnect may have cost the consumer (the server restarted), and
            // async-nats only notices that if it was polled across the outage, which it
            // is not while the reader lags behind; so a reconnect always re-creates it.
            loop {
                let next = tokio::select! {
                    biased;
                    event = self.events.recv() => match event {
                        Ok(ConnectionEvent::Connected) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    next = messages.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        tracing::debug!(bucket = %self.store.inner.bucket, %error, "kv watch consumer failed");
                        break;
                    }
                    None => break,
                };
                let Some(change) = parse(&self.store, &message) else {
                    continue;
                };
                if change.revision <= self.last {
                    continue;
                }
                self.last = change.revision;
                if self
                    .keep
                    .as_ref()
                    .is_some_and(|p| !change.key.starts_with(p))
                {
                    continue;
                }
                if self.sender.send(change).await.is_err() {
                    return;
                }
            }
            match self.recreate().await {
                Some(fresh) => messages = fresh,
                None => return,
            }
        }
    }

    /// Re-creates the consumer from the revision after the last one, retrying with
    /// backoff until it works or the watch is dropped.
    async fn recreate(&self) -> Option<Ordered> {
        let mut delay = Duration::from_millis(50);
        loop {
            if self.sender.is_closed() {
                return None;
            }
            let policy = if self.last == 0 {
                self.initial
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: self.last + 1,
                }
            };
            match consumer(&self.store, &self.filter, policy, false).await {
                Ok((messages, _, _)) => {
                    tracing::debug!(bucket = %self.store.inner.bucket, from = self.last + 1, "kv watch resumed");
                    return Some(messages);
                }
                Err(error) => {
                    tracing::debug!(bucket = %self.store.inner.bucket, %error, ?delay, "kv watch not resumed yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The reader's end of a watch; dropping it ends the task.
struct ChangeStream {
    receiver: mpsc::Receiver<KvChange>,
    task: tokio::task::JoinHandle<()>,
}

impl futures::Stream for ChangeStream {
    type Item = KvChange;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<KvChange>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
