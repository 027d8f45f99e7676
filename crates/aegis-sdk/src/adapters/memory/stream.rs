//! Durable streams and consumers in memory: what the event bus and the command queue
//! are made of, as JetStream streams and consumers are on a server.
//!
//! A stream stores the messages published to its subjects under growing sequence
//! numbers, deduplicated by message id within its duplicate window. A consumer walks one
//! stream: it hands out each matching message, remembers it as pending until it is
//! settled, and hands it out again when its deadline passes (the ack wait after a
//! delivery, the delay of a nak). Users of one consumer share it, so each message goes
//! to one of them. All times are tokio's, so a paused clock drives redelivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::consumer::{Consumer, ConsumerConfig, Next, Settlement, Taken};
use super::subject;
use crate::domain::event_pattern::subject_covers;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::events::{PublishReceipt, Retention, StartAt, StreamState};
use crate::ports::Headers;

/// The largest message (headers and payload) a default server accepts: 1 MiB.
const MAX_PAYLOAD: usize = 1024 * 1024;

/// A stream to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamConfig {
    pub(crate) name: String,
    pub(crate) subjects: Vec<String>,
    pub(crate) retention: Retention,
    pub(crate) max_messages: Option<u64>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) duplicate_window: Duration,
}

/// Every stream of one in-memory server. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Streams {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<HashMap<String, Stream>>,
    /// Woken on every change a waiting consumer may care about.
    changed: Notify,
}

struct Stream {
    config: StreamConfig,
    messages: BTreeMap<u64, Stored>,
    last_sequence: u64,
    /// Message ids seen within the duplicate window: id -> (sequence, when).
    ids: HashMap<String, (u64, Instant)>,
    consumers: BTreeMap<String, Consumer>,
}

/// A message as the stream keeps it.
pub(super) struct Stored {
    pub(super) subject: String,
    pub(super) headers: Headers,
    pub(super) payload: Bytes,
    stored_at: Instant,
    time: SystemTime,
}

impl Stream {
    /// Applies the age limit, forgets message ids past the duplicate window, and
    /// removes consumers that had no user for their inactivity threshold.
    fn expire(&mut self, now: Instant) {
        if let Some(max_age) = self.config.max_age {
            while let Some(entry) = self.messages.first_entry() {
                if entry.get().stored_at + max_age > now {
                    break;
                }
                entry.remove();
            }
        }
        let window = self.config.duplicate_window;
        self.ids.retain(|_, (_, at)| *at + window > now);
        self.consumers
            .retain(|_, consumer| match consumer.config.inactive_threshold {
                Some(threshold) if consumer.users == 0 => consumer.idle_since + threshold > now,
                _ => true,
            });
    }

    fn state(&self) -> StreamState {
        StreamState {
            name: self.config.name.clone(),
            subjects: self.config.subjects.clone(),
            retention: self.config.retention,
            messages: self.messages.len() as u64,
        }
    }

    fn start_cursor(&self, start: StartAt) -> u64 {
        match start {
            StartAt::New => self.last_sequence + 1,
            StartAt::First => 1,
            StartAt::Sequence(sequence) => sequence.max(1),
            StartAt::Time(time) => self
                .messages
                .iter()
                .find(|(_, message)| message.time >= time)
                .map_or(self.last_sequence + 1, |(sequence, _)| *sequence),
        }
    }
}

fn not_found(stream: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no stream {stream}"))
}

/// Whether two subject filters can match one subject.
fn overlap(a: &str, b: &str) -> bool {
    subject_covers(a, b) || subject_covers(b, a)
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Stream>> {
        // Every change completes under the guard; a panic cannot leave half of one.
        let mut streams = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        for stream in streams.values_mut() {
            stream.expire(now);
        }
        streams
    }

    /// Stream `name` as it is now.
    pub(crate) fn stream(&self, name: &str) -> Result<StreamState> {
        self.lock()
            .get(name)
            .map(Stream::state)
            .ok_or_else(|| not_found(name))
    }

    /// Creates a stream. Creating one that exists with the same configuration succeeds,
    /// as on a server.
    ///
    /// # Errors
    /// `AlreadyExists` when it exists with another configuration, `Storage` when its
    /// subjects overlap another stream's.
    pub(crate) fn create(&self, config: StreamConfig) -> Result<StreamState> {
        let mut streams = self.lock();
        if let Some(existing) = streams.get(&config.name) {
            if existing.config == config {
                return Ok(existing.state());
            }
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("stream {} exists with another configuration", config.name),
            ));
        }
        for other in streams.values() {
            for theirs in &other.config.subjects {
                if config.subjects.iter().any(|ours| overlap(ours, theirs)) {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!(
                            "cannot create stream {}: its subjects overlap stream {}'s",
                            config.name, other.config.name
                        ),
                    ));
                }
            }
        }
        let stream = Stream {
            config: config.clone(),
            messages: BTreeMap::new(),
            last_sequence: 0,
            ids: HashMap::new(),
            consumers: BTreeMap::new(),
        };
        let state = stream.state();
        streams.insert(config.name, stream);
        tracing::debug!(stream = %state.name, "created in-memory stream");
        Ok(state)
    }

    /// Checks a message's size before it is "sent".
    pub(crate) fn check_size(subject: &str, headers: &Headers, payload: &Bytes) -> Result<()> {
        let size = headers.wire_len() + payload.len();
        if size > MAX_PAYLOAD {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("message to {subject} of {size} bytes exceeds max_payload of {MAX_PAYLOAD} bytes"),
            ));
        }
        Ok(())
    }

    /// Stores a message in the stream that captures `subject`.
    ///
    /// # Errors
    /// `NotFound` when no stream captures it.
    pub(crate) fn publish(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        message_id: Option<&str>,
    ) -> Result<PublishReceipt> {
        let mut streams = self.lock();
        let stream = streams
            .values_mut()
            .find(|stream| {
                stream
                    .config
                    .subjects
                    .iter()
                    .any(|pattern| subject::matches(pattern, &subject))
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no stream captures subject {subject}"),
                )
            })?;

        let now = Instant::now();
        if let Some(id) = message_id {
            if let Some((sequence, _)) = stream.ids.get(id) {
                return Ok(PublishReceipt {
                    stream: stream.config.name.clone(),
                    sequence: *sequence,
                    duplicate: true,
                });
            }
        }
        stream.last_sequence += 1;
        let sequence = stream.last_sequence;
        if let Some(id) = message_id {
            stream.ids.insert(id.to_owned(), (sequence, now));
        }
        stream.messages.insert(
            sequence,
            Stored {
                subject,
                headers,
                payload,
                stored_at: now,
                time: SystemTime::now(),
            },
        );
        // Discard old.
        if let Some(max) = stream.config.max_messages {
            while stream.messages.len() as u64 > max {
                stream.messages.pop_first();
            }
        }
        let receipt = PublishReceipt {
            stream: stream.config.name.clone(),
            sequence,
            duplicate: false,
        };
        drop(streams);
        self.inner.changed.notify_waiters();
        Ok(receipt)
    }

    /// Creates consumer `name` on `stream` unless it exists; returns its configuration
    /// as it is.
    ///
    /// # Errors
    /// `NotFound` when the stream does not exist.
    pub(crate) fn consumer(
        &self,
        stream: &str,
        name: &str,
        config: &ConsumerConfig,
    ) -> Result<ConsumerConfig> {
        let mut streams = self.lock();
        let found = streams.get_mut(stream).ok_or_else(|| not_found(stream))?;
        if let Some(existing) = found.consumers.get(name) {
            return Ok(existing.config.clone());
        }
        let cursor = found.start_cursor(config.start);
        found
            .consumers
            .insert(name.to_owned(), Consumer::new(config.clone(), cursor));
        Ok(config.clone())
    }

    /// Counts a user of a consumer in (`true`) or out; a consumer with an inactivity
    /// threshold is removed once it had no user for that long.
    pub(crate) fn attach(&self, stream: &str, name: &str, attach: bool) {
        let mut streams = self.lock();
        let Some(consumer) = streams
            .get_mut(stream)
            .and_then(|s| s.consumers.get_mut(name))
        else {
            return;
        };
        if attach {
            consumer.users += 1;
        } else {
            consumer.users = consumer.users.saturating_sub(1);
            consumer.idle_since = Instant::now();
        }
    }

    /// Deletes a consumer; one that does not exist is fine.
    pub(crate) fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        let mut streams = self.lock();
        let found = streams.get_mut(stream).ok_or_else(|| not_found(stream))?;
        found.consumers.remove(name);
        Ok(())
    }

    /// Every message still stored in `stream`, oldest first.
    pub(crate) fn messages(&self, stream: &str) -> Result<Vec<Taken>> {
        let streams = self.lock();
        let found = streams.get(stream).ok_or_else(|| not_found(stream))?;
        Ok(found
            .messages
            .iter()
            .map(|(sequence, message)| Taken::of(*sequence, message, 0))
            .collect())
    }

    /// The names of a stream's consumers, sorted.
    pub(crate) fn consumer_names(&self, stream: &str) -> Result<Vec<String>> {
        let streams = self.lock();
        let found = streams.get(stream).ok_or_else(|| not_found(stream))?;
        Ok(found.consumers.keys().cloned().collect())
    }

    /// Waits for the next message of consumer `name` until `deadline` (`None`: for
    /// ever). A consumer deleted meanwhile is created again with `recreate`, as the NATS
    /// adapter sets a lost consumer up again.
    pub(crate) async fn next(
        &self,
        stream: &str,
        name: &str,
        recreate: &ConsumerConfig,
        deadline: Option<Instant>,
    ) -> Option<Taken> {
        loop {
            // Register for a wake-up before looking, so a change between the look and
            // the wait is not missed.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let wait = {
                let mut streams = self.lock();
                let found = streams.get_mut(stream)?;
                let Some(consumer) = found.consumers.get_mut(name) else {
                    drop(streams);
                    // The stream is there, so this only fails if it went meanwhile.
                    self.consumer(stream, name, recreate).ok()?;
                    self.attach(stream, name, true);
                    continue;
                };
                match consumer.take(&found.messages, found.last_sequence, Instant::now()) {
                    Next::Ready(taken) => return Some(taken),
                    Next::Wait(until) => match (until, deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                }
            };

            // Either something changed, or a redelivery (or the deadline) is due.
            match wait {
                Some(until) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                None => changed.await,
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return None;
            }
        }
    }

    /// Settles delivery `sequence` of consumer `name`. Settling one that is no longer
    /// pending (redelivered and acknowledged elsewhere, say) does nothing.
    pub(crate) fn settle(&self, stream: &str, name: &str, sequence: u64, how: Settlement) {
        let mut streams = self.lock();
        let Some(found) = streams.get_mut(stream) else {
            return;
        };
        let work_queue = found.config.retention == Retention::WorkQueue;
        let Some(consumer) = found.consumers.get_mut(name) else {
            return;
        };
        if consumer.settle(sequence, how, Instant::now()) && work_queue {
            // A work queue forgets what one consumer is done with.
            found.messages.remove(&sequence);
        }
        drop(streams);
        self.inner.changed.notify_waiters();
    }
}
