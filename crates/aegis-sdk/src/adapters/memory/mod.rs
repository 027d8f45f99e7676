//! In-memory adapters, for users' unit tests: no NATS server needed.
//!
//! Enabled by the `testing` cargo feature. They keep the semantics a service relies on
//! (queue-group load balancing, no responders, timeouts on tokio's clock so
//! `tokio::time::pause()` works) and are held to the same contract tests as the NATS
//! adapters. They are not a substitute for testing against a real server.

mod backend;
pub mod commands;
pub mod election;
pub mod events;
pub mod kv;
mod stream;
pub mod subject;
pub mod transport;

pub use backend::MemoryBackend;
pub use commands::{MemoryCommandQueue, MemoryCommandStore};
pub use election::MemoryLeaseStore;
pub use events::MemoryEventBus;
pub use kv::MemoryKvStore;
pub use transport::MemoryTransport;
