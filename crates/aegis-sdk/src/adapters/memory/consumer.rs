//! One durable consumer of an in-memory stream: where it is in the stream, what it
//! handed out and when that is due again.
//!
//! A message handed out is pending until settled. Its deadline is the ack wait after
//! the delivery (restarted by an in-progress), or the delay of a nak; once it passes,
//! the message is handed out again, before any new one, with its delivery count raised.
//! At most `max_ack_pending` messages are pending at once.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::stream::Stored;
use super::subject;
use crate::ports::events::StartAt;
use crate::ports::Headers;

/// A consumer to create (or use as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerConfig {
    pub(crate) filter: String,
    pub(crate) start: StartAt,
    pub(crate) ack_wait: Duration,
    pub(crate) max_ack_pending: usize,
    pub(crate) inactive_threshold: Option<Duration>,
}

/// A message handed to a consumer's user.
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    pub(crate) subject: String,
    pub(crate) headers: Headers,
    pub(crate) payload: Bytes,
    pub(crate) sequence: u64,
    /// Deliveries so far, this one included.
    pub(crate) delivered: u64,
}

impl Taken {
    pub(super) fn of(sequence: u64, message: &Stored, delivered: u64) -> Taken {
        Taken {
            subject: message.subject.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            sequence,
            delivered,
        }
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    Ack,
    Nak(Duration),
    InProgress,
    Term,
}

/// What a consumer has for its user now.
pub(super) enum Next {
    Ready(Taken),
    /// Nothing yet; a redelivery falls due at this time, if any is pending.
    Wait(Option<Instant>),
}

pub(super) struct Consumer {
    pub(super) config: ConsumerConfig,
    /// The next sequence to look at for a first delivery.
    cursor: u64,
    pending: BTreeMap<u64, Pending>,
    /// Live users (consume streams); with an inactivity threshold, a consumer without
    /// users for that long is removed.
    pub(super) users: usize,
    pub(super) idle_since: Instant,
}

struct Pending {
    delivered: u64,
    /// When it is handed out again unless settled first.
    due: Instant,
}

impl Consumer {
    /// A consumer that looks for its first delivery at sequence `cursor`.
    pub(super) fn new(config: ConsumerConfig, cursor: u64) -> Self {
        Consumer {
            config,
            cursor,
            pending: BTreeMap::new(),
            users: 0,
            idle_since: Instant::now(),
        }
    }

    /// The next delivery out of `messages` (the stream's, up to `last_sequence`).
    pub(super) fn take(
        &mut self,
        messages: &BTreeMap<u64, Stored>,
        last_sequence: u64,
        now: Instant,
    ) -> Next {
        // Redeliveries first, oldest sequence first; one whose message is gone (removed
        // by a limit) is forgotten.
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.due <= now)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in due {
            let (Some(message), Some(pending)) =
                (messages.get(&sequence), self.pending.get_mut(&sequence))
            else {
                self.pending.remove(&sequence);
                continue;
            };
            pending.delivered += 1;
            pending.due = now + self.config.ack_wait;
            return Next::Ready(Taken::of(sequence, message, pending.delivered));
        }

        if self.pending.len() < self.config.max_ack_pending.max(1) {
            let filter = &self.config.filter;
            let found = messages
                .range(self.cursor..)
                .find(|(_, message)| subject::matches(filter, &message.subject));
            if let Some((&sequence, message)) = found {
                self.cursor = sequence + 1;
                self.pending.insert(
                    sequence,
                    Pending {
                        delivered: 1,
                        due: now + self.config.ack_wait,
                    },
                );
                return Next::Ready(Taken::of(sequence, message, 1));
            }
            self.cursor = last_sequence + 1;
        }
        Next::Wait(self.pending.values().map(|pending| pending.due).min())
    }

    /// Settles delivery `sequence`; returns true when the consumer is done with the
    /// message (acknowledged or terminated). Settling one that is no longer pending
    /// (redelivered and acknowledged by another user, say) does nothing.
    pub(super) fn settle(&mut self, sequence: u64, how: Settlement, now: Instant) -> bool {
        match how {
            Settlement::Ack | Settlement::Term => self.pending.remove(&sequence).is_some(),
            Settlement::Nak(delay) => {
                if let Some(pending) = self.pending.get_mut(&sequence) {
                    pending.due = now + delay;
                }
                false
            }
            Settlement::InProgress => {
                if let Some(pending) = self.pending.get_mut(&sequence) {
                    pending.due = now + self.config.ack_wait;
                }
                false
            }
        }
    }
}
