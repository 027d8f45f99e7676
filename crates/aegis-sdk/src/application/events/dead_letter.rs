//! Dead letters: events that could not be handled, moved aside with the reason.
//!
//! A dead letter is published to `dlq.events.{domain}.{event_type}` (stream
//! [`DEAD_LETTER_STREAM`](super::DEAD_LETTER_STREAM)) with the original body unchanged
//! and these headers:
//!
//! | header | value |
//! |---|---|
//! | [`REASON`] | why it failed: the handler's error text, `handler panicked: ...` or `DECODE: ...` |
//! | [`ATTEMPTS`] | how many deliveries were tried |
//! | [`SUBJECT`] | the original subject |
//! | [`STREAM_SEQUENCE`] | its sequence in `EVENTS` |
//! | [`SERVICE`], [`INSTANCE`], [`CONSUMER`] | who gave up on it |
//!
//! The original headers are copied as they were, except the `Nats-*` ones (directives to
//! the server), which are kept under `Aegis-Dlq-Original-{name}`.

use std::sync::Arc;

use crate::error::Result;
use crate::ports::events::{Delivery, EventBus};
use crate::ports::Headers;

/// Header: why the event failed.
pub const REASON: &str = "Aegis-Dlq-Reason";
/// Header: how many deliveries were tried.
pub const ATTEMPTS: &str = "Aegis-Dlq-Attempts";
/// Header: the subject the event was published to.
pub const SUBJECT: &str = "Aegis-Dlq-Subject";
/// Header: the event's sequence in the `EVENTS` stream.
pub const STREAM_SEQUENCE: &str = "Aegis-Dlq-Stream-Sequence";
/// Header: the service that gave up on it.
pub const SERVICE: &str = "Aegis-Dlq-Service";
/// Header: the instance that gave up on it.
pub const INSTANCE: &str = "Aegis-Dlq-Instance";
/// Header: the consumer it was delivered by.
pub const CONSUMER: &str = "Aegis-Dlq-Consumer";
/// Prefix of the original `Nats-*` headers.
pub const ORIGINAL_PREFIX: &str = "Aegis-Dlq-Original-";

/// Longest reason kept in the header.
const REASON_MAX: usize = 1024;

/// `dlq.events.{domain}.{event_type}` for an event published to `events.{...}`.
pub fn dead_letter_subject(subject: &str) -> String {
    let rest = subject.strip_prefix("events.").unwrap_or(subject);
    format!("dlq.events.{rest}")
}

/// Who moves dead letters, and where from.
pub(crate) struct DeadLetters {
    pub(crate) bus: Arc<dyn EventBus>,
    pub(crate) service: String,
    pub(crate) instance: String,
    pub(crate) consumer: String,
}

impl DeadLetters {
    /// Publishes `delivery` as a dead letter and waits until it is stored. Retrying
    /// is safe: its id makes the server drop a second copy.
    pub(crate) async fn send(&self, delivery: &Delivery, reason: &str) -> Result<()> {
        let mut headers = Headers::new();
        for (name, value) in delivery.headers.iter() {
            if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
                headers.append(format!("{ORIGINAL_PREFIX}{name}"), value);
            } else {
                headers.append(name, value);
            }
        }
        headers.insert(REASON, header_safe(reason));
        headers.insert(ATTEMPTS, delivery.attempt.to_string());
        headers.insert(SUBJECT, delivery.subject.clone());
        headers.insert(STREAM_SEQUENCE, delivery.stream_sequence.to_string());
        headers.insert(SERVICE, self.service.clone());
        headers.insert(INSTANCE, self.instance.clone());
        headers.insert(CONSUMER, self.consumer.clone());

        let id = format!("{}-{}", self.consumer, delivery.stream_sequence);
        let subject = dead_letter_subject(&delivery.subject);
        let pending = self
            .bus
            .publish(subject, headers, delivery.payload.clone(), &id)
            .await?;
        pending.await?;
        Ok(())
    }
}

/// Header values are one line of printable text.
fn header_safe(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_MAX)
        .collect();
    if line.trim().is_empty() {
        "unknown".to_owned()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_reasons() {
        assert_eq!(
            dead_letter_subject("events.order.created"),
            "dlq.events.order.created"
        );
        assert_eq!(header_safe("a\r\nb"), "a  b");
        assert_eq!(header_safe(""), "unknown");
        assert_eq!(header_safe(&"x".repeat(5000)).len(), REASON_MAX);
    }
}
