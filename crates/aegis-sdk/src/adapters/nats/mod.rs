//! The NATS adapters, built on async-nats.
//!
//! Every async-nats error is mapped to an [`Error`](crate::Error) here, at the boundary;
//! the source chain keeps the original for people, the kind is what callers match on.

mod backend;
mod command_queue;
mod command_store;
pub mod election;
pub mod events;
mod headers;
mod jetstream;
pub mod kv;
mod kv_batch;
mod kv_watch;
pub mod options;
pub mod transport;

pub use backend::NatsBackend;
pub use command_queue::NatsCommandQueue;
pub use command_store::NatsCommandStore;
pub use election::NatsLeaseStore;
pub use events::NatsEventBus;
pub use kv::NatsKvStore;
pub use options::{ConnectOptions, ReconnectPolicy};
pub use transport::NatsTransport;
