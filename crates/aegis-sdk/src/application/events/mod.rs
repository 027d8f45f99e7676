//! Durable events on JetStream: publish to `events.{domain}.{event_type}` (stream
//! `EVENTS`), subscribe with patterns in compete or broadcast mode, at least once, with
//! redelivery, backoff and dead letters.
//!
//! - Publish with [`Client::publish_event`](crate::Client::publish_event) or an
//!   [`EventPublisher`] (awaited or pipelined).
//! - Subscribe with [`ServiceBuilder::on_event`](crate::ServiceBuilder::on_event) or
//!   [`ServiceBuilder::events`](crate::ServiceBuilder::events) and an
//!   [`EventSubscription`].
//! - Failed events land in the [`dead_letter`] stream.

pub mod dead_letter;
mod handler;
mod naming;
mod pending;
mod publisher;
mod stream;
mod subscription;
mod worker;

pub use handler::EventContext;
pub use pending::PendingEvent;
pub use publisher::{EventPublisher, PublisherOptions};
pub use stream::{
    EventStreamConfig, DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, EVENTS_STREAM, EVENTS_SUBJECTS,
};
pub use subscription::{DeliveryMode, EventSubscription, StartPolicy};
