//! The `EVENTS` stream and its dead-letter stream: settings, and making sure they exist
//! and can serve.

use std::time::Duration;

use crate::domain::event_pattern::subject_covers;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::events::{EventBus, Retention, Storage, StreamSpec, StreamState};

/// The stream events are stored in (wire contract).
pub const EVENTS_STREAM: &str = "EVENTS";
/// The subjects of [`EVENTS_STREAM`].
pub const EVENTS_SUBJECTS: &str = "events.>";
/// The stream failed events are moved to.
pub const DEAD_LETTER_STREAM: &str = "EVENTS_DLQ";
/// The subjects of [`DEAD_LETTER_STREAM`]: `dlq.events.{domain}.{event_type}`.
pub const DEAD_LETTER_SUBJECTS: &str = "dlq.events.>";

/// How the `EVENTS` and `EVENTS_DLQ` streams are created when they do not exist yet.
/// An existing stream is used as it is: these settings never change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStreamConfig {
    /// At most this many events are kept; the oldest go first (default 100,000, as the
    /// Python SDK creates it).
    pub max_messages: Option<u64>,
    /// At most this many bytes (default unlimited).
    pub max_bytes: Option<u64>,
    /// Events older than this are removed (default never).
    pub max_age: Option<Duration>,
    /// Replicas in a cluster (default 1).
    pub replicas: usize,
    /// File or memory (default file).
    pub storage: Storage,
    /// How long the server remembers event ids to drop a retried publish (default 2 min).
    pub duplicate_window: Duration,
    /// At most this many dead letters are kept (default 100,000).
    pub dead_letter_max_messages: Option<u64>,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        EventStreamConfig {
            max_messages: Some(100_000),
            max_bytes: None,
            max_age: None,
            replicas: 1,
            storage: Storage::File,
            duplicate_window: Duration::from_secs(120),
            dead_letter_max_messages: Some(100_000),
        }
    }
}

impl EventStreamConfig {
    pub(crate) fn events_spec(&self) -> StreamSpec {
        StreamSpec {
            name: EVENTS_STREAM.to_owned(),
            subjects: vec![EVENTS_SUBJECTS.to_owned()],
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
            replicas: self.replicas,
            storage: self.storage,
            duplicate_window: self.duplicate_window,
        }
    }

    pub(crate) fn dead_letter_spec(&self) -> StreamSpec {
        StreamSpec {
            name: DEAD_LETTER_STREAM.to_owned(),
            subjects: vec![DEAD_LETTER_SUBJECTS.to_owned()],
            max_messages: self.dead_letter_max_messages,
            max_bytes: None,
            max_age: None,
            replicas: self.replicas,
            storage: self.storage,
            duplicate_window: self.duplicate_window,
        }
    }
}

/// What a stream is needed for: storing only, or also feeding consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Publish,
    Consume,
}

/// Makes sure `spec`'s stream exists (creating it when missing) and can serve
/// `subject`. An existing stream is never changed.
///
/// # Errors
/// [`ErrorKind::Storage`] when the existing stream does not capture `subject`, or cannot
/// feed several consumers (work-queue retention) when `purpose` is [`Use::Consume`];
/// whatever the bus reports otherwise.
pub(crate) async fn ensure_stream(
    bus: &dyn EventBus,
    spec: &StreamSpec,
    subject: &str,
    purpose: Use,
) -> Result<StreamState> {
    let state = match bus.stream(&spec.name).await {
        Ok(state) => state,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            match bus.create_stream(spec).await {
                Ok(state) => state,
                // Another process created it between our lookup and our create.
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                    bus.stream(&spec.name).await?
                }
                Err(error) => return Err(error),
            }
        }
        Err(error) => return Err(error),
    };
    check_serves(&state, subject, purpose)?;
    Ok(state)
}

fn check_serves(state: &StreamState, subject: &str, purpose: Use) -> Result<()> {
    if !state.subjects.iter().any(|s| subject_covers(s, subject)) {
        return Err(Error::new(
            ErrorKind::Storage,
            format!(
                "stream {} exists with subjects {:?}, which do not include {subject}; \
                 it cannot serve events (it is used as it is and never changed)",
                state.name, state.subjects
            ),
        ));
    }
    if purpose == Use::Consume && state.retention == Retention::WorkQueue {
        return Err(Error::new(
            ErrorKind::Storage,
            format!(
                "stream {} has work-queue retention, which cannot feed several consumers; \
                 event subscriptions need limits or interest retention",
                state.name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(subjects: &[&str], retention: Retention) -> StreamState {
        StreamState {
            name: EVENTS_STREAM.to_owned(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            retention,
            messages: 0,
        }
    }

    #[test]
    fn existing_streams_must_capture_the_subject() {
        let events = state(&["events.>"], Retention::Limits);
        assert!(check_serves(&events, "events.order.*", Use::Consume).is_ok());
        let other = state(&["orders.>"], Retention::Limits);
        let err = check_serves(&other, "events.order.created", Use::Publish).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
    }

    #[test]
    fn work_queues_cannot_feed_subscriptions() {
        let queue = state(&["events.>"], Retention::WorkQueue);
        assert!(check_serves(&queue, "events.a.b", Use::Publish).is_ok());
        assert!(check_serves(&queue, "events.a.*", Use::Consume).is_err());
    }
}
