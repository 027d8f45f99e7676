//! Ports: the contracts between the application layer and the outside world.
//!
//! The application layer (services, clients) is written against these traits only. The
//! NATS adapters in [`crate::adapters::nats`] implement them over a real server; an
//! in-memory adapter implements them for users' unit tests. Each method documents which
//! [`ErrorKind`](crate::ErrorKind) an adapter returns in which case, and adapters are
//! tested against those words.

pub mod backend;
pub mod commands;
pub mod election;
pub mod events;
pub mod kv;
pub mod transport;

pub use backend::Backend;
pub use election::{LeaseEntry, LeaseEvent, LeaseStore};
pub use transport::{
    ConnectionEvent, ConnectionState, Headers, InboundMessage, Subscription, Transport,
};
