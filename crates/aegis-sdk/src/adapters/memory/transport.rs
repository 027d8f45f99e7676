//! [`Transport`] in memory: subscriptions in a table, delivery through channels.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::sync::{broadcast, mpsc};

use super::subject;
use crate::domain::subjects::{check_filter, check_queue_group, check_subject};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::transport::SubscriptionStream;
use crate::ports::{
    ConnectionEvent, ConnectionState, Headers, InboundMessage, Subscription, Transport,
};

/// The default largest message, as a default nats-server has it: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// An in-memory message bus implementing [`Transport`]. Clones share the bus, as
/// connections to one server would.
#[derive(Clone)]
pub struct MemoryTransport {
    bus: Arc<Mutex<Bus>>,
    max_payload: usize,
    events: broadcast::Sender<ConnectionEvent>,
}

#[derive(Default)]
struct Bus {
    next_id: u64,
    subscriptions: Vec<Entry>,
    /// Per queue group, how many messages it has handed out: the round-robin cursor.
    cursors: HashMap<(String, String), usize>,
}

struct Entry {
    id: u64,
    pattern: String,
    queue: Option<String>,
    sender: mpsc::UnboundedSender<InboundMessage>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// A new bus refusing messages over `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        let (events, _) = broadcast::channel(16);
        MemoryTransport {
            bus: Arc::new(Mutex::new(Bus::default())),
            max_payload,
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bus> {
        // A panic while holding the lock leaves the table consistent: every operation
        // on it is a single push, retain or lookup.
        self.bus
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check(&self, subject: &str, headers: &Headers, payload: &Bytes) -> Result<()> {
        check_subject(subject)?;
        headers.check()?;
        let size = headers.wire_len() + payload.len();
        if size > self.max_payload {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "message of {size} bytes exceeds max_payload of {} bytes",
                    self.max_payload
                ),
            ));
        }
        Ok(())
    }

    /// Delivers to every plain subscriber and one member of each queue group; returns
    /// how many received it.
    fn deliver(&self, message: InboundMessage) -> usize {
        let mut bus = self.lock();
        bus.subscriptions.retain(|entry| !entry.sender.is_closed());

        let mut plain = Vec::new();
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, entry) in bus.subscriptions.iter().enumerate() {
            if !subject::matches(&entry.pattern, &message.subject) {
                continue;
            }
            match &entry.queue {
                None => plain.push(index),
                Some(queue) => groups.entry(queue.clone()).or_default().push(index),
            }
        }

        let mut chosen = plain;
        for (queue, members) in groups {
            let cursor = bus
                .cursors
                .entry((queue, message.subject.clone()))
                .or_insert(0);
            chosen.push(members[*cursor % members.len()]);
            *cursor = cursor.wrapping_add(1);
        }
        chosen
            .into_iter()
            .filter(|&index| {
                bus.subscriptions[index]
                    .sender
                    .send(message.clone())
                    .is_ok()
            })
            .count()
    }

    fn add(
        &self,
        pattern: String,
        queue: Option<String>,
    ) -> (u64, mpsc::UnboundedReceiver<InboundMessage>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut bus = self.lock();
        bus.next_id += 1;
        let id = bus.next_id;
        bus.subscriptions.push(Entry {
            id,
            pattern,
            queue,
            sender,
        });
        (id, receiver)
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<()> {
        self.check(&subject, &headers, &payload)?;
        self.deliver(InboundMessage {
            subject,
            reply: None,
            headers,
            payload,
        });
        Ok(())
    }

    async fn request(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<InboundMessage> {
        self.check(&subject, &headers, &payload)?;
        let inbox = format!("_INBOX.memory.{}", uuid::Uuid::new_v4().simple());
        let (id, mut replies) = self.add(inbox.clone(), None);
        let _remove = Removal {
            bus: self.bus.clone(),
            id,
        };

        let delivered = self.deliver(InboundMessage {
            subject: subject.clone(),
            reply: Some(inbox),
            headers,
            payload,
        });
        if delivered == 0 {
            return Err(Error::new(
                ErrorKind::NoResponders,
                format!("no responders on {subject}"),
            ));
        }
        match tokio::time::timeout(timeout, replies.recv()).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(Error::new(ErrorKind::Connection, "reply inbox closed")),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no reply on {subject} within {timeout:?}"),
            )),
        }
    }

    async fn subscribe(
        &self,
        subject: String,
        queue_group: Option<String>,
    ) -> Result<Subscription> {
        check_filter(&subject)?;
        if let Some(group) = &queue_group {
            check_queue_group(group)?;
        }
        let (id, receiver) = self.add(subject, queue_group);
        Ok(Subscription::new(MemorySubscription {
            receiver,
            removal: Some(Removal {
                bus: self.bus.clone(),
                id,
            }),
        }))
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn connection_state(&self) -> ConnectionState {
        ConnectionState::Connected
    }

    fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }
}

/// Takes a subscription out of the table when dropped.
struct Removal {
    bus: Arc<Mutex<Bus>>,
    id: u64,
}

impl Drop for Removal {
    fn drop(&mut self) {
        let mut bus = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        bus.subscriptions.retain(|entry| entry.id != self.id);
    }
}

struct MemorySubscription {
    receiver: mpsc::UnboundedReceiver<InboundMessage>,
    removal: Option<Removal>,
}

impl Stream for MemorySubscription {
    type Item = InboundMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl SubscriptionStream for MemorySubscription {
    fn drain(mut self: Pin<&mut Self>) -> BoxFuture<'_, Result<()>> {
        // Out of the table: no new messages; those queued are still yielded, then the
        // stream ends because the table held the only sender.
        self.removal.take();
        futures::future::ready(Ok(())).boxed()
    }
}
