//! The NATS adapters, built on async-nats.
//!
//! Every async-nats error is mapped to an [`Error`](crate::Error) here, at the boundary;
//! the source chain keeps the original for people, the kind is what callers match on.

pub mod election;
mod headers;
pub mod options;
pub mod transport;

pub use election::NatsLeaseStore;
pub use options::{ConnectOptions, ReconnectPolicy};
pub use transport::NatsTransport;
