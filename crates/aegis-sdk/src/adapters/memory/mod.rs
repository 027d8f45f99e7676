//! In-memory adapters: test services without a NATS server.
//!
//! Enabled by the `testing` cargo feature. A [`MemoryBackend`] is one in-memory "server":
//! a message bus ([`MemoryTransport`]), durable streams for events and commands
//! ([`MemoryEventBus`], [`MemoryCommandQueue`]) and KV buckets ([`MemoryKvStore`], which
//! also hold the registry, command status records and election leases). Every
//! [`Client`](crate::Client) it hands out is connected to it, so services, event
//! subscriptions, command workers, the registry and single-active election all run on
//! it unchanged: the application layer only sees the ports.
//!
//! ```toml
//! [dev-dependencies]
//! aegis-sdk = { version = "0.1", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt", "test-util"] } # test-util: pause()
//! ```
//!
//! # A service under test
//!
//! ```
//! use std::time::Duration;
//!
//! use aegis_sdk::application::kv::Kv;
//! use aegis_sdk::ports::kv::BucketConfig;
//! use aegis_sdk::{Client, HandlerError, RpcContext, Service};
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> aegis_sdk::Result<()> {
//! // In a test: #[tokio::test(start_paused = true)]
//! let client = Client::in_memory();
//! let sessions = Kv::open(&client, BucketConfig::new("sessions")).await?;
//!
//! let service = Service::builder("auth")
//!     .rpc("login", {
//!         let sessions = sessions.clone();
//!         move |_: RpcContext, p: Value| {
//!             let sessions = sessions.clone();
//!             async move {
//!                 let user = p["user"].as_str().unwrap_or("anonymous").to_owned();
//!                 sessions
//!                     .put_with_ttl(&user, &"active", Duration::from_secs(60))
//!                     .await
//!                     .map_err(HandlerError::msg)?;
//!                 Ok::<_, HandlerError>(json!({"session": user}))
//!             }
//!         }
//!     })
//!     .build()?;
//! service.start(&client).await?;
//!
//! let reply: Value = client.call("auth", "login", json!({"user": "ada"})).await?;
//! assert_eq!(reply["session"], "ada");
//!
//! // On a paused clock, a minute passes at once: the session's TTL runs out.
//! tokio::time::sleep(Duration::from_secs(61)).await;
//! assert!(sessions.get::<String>("ada").await?.is_none());
//! service.stop().await
//! # }
//! ```
//!
//! For several connections to one server (a service on one, its caller on another, or
//! several instances of one service), make the clients from one [`MemoryBackend`]:
//! `let server = MemoryBackend::new(); let (a, b) = (server.client(), server.client());`.
//! `Client::in_memory()` is `MemoryBackend::new().client()`.
//!
//! To assert on what a service sent, read the streams:
//! [`MemoryBackend::messages`]`("EVENTS")` lists the events published so far,
//! `"EVENTS_DLQ"` and `"COMMANDS_DLQ"` the dead letters; buckets are open to any client
//! with [`Kv::open`](crate::application::kv::Kv::open).
//!
//! # What behaves as on NATS
//!
//! The semantics a service relies on are kept, and held to the same contract tests as
//! the NATS adapters (`tests/contract_*.rs` run every case on a real nats-server and in
//! memory):
//!
//! - Core messaging: subscribers with `*` and `>` wildcards, queue groups (each message
//!   to one member, round robin), headers, drain.
//! - RPC: queue groups share calls round robin; a call nobody serves fails at once with
//!   [`ErrorKind::NoResponders`](crate::ErrorKind::NoResponders); a slow one with
//!   [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) after its deadline; payloads over
//!   1 MiB are [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge).
//! - Events: streams with wildcard subjects, deduplication by message id, durable
//!   consumers shared by a compete group or one per broadcast instance, start policies,
//!   at-least-once delivery: a handler error is redelivered after its backoff, an
//!   unacknowledged event after the ack wait, and after the last attempt the event goes
//!   to the dead letters.
//! - Commands: the work queue with priorities, progress, results, cancel, timeouts,
//!   retries and dead letters; one command id runs once.
//! - KV: bucket-wide revisions, create and update conflicts
//!   ([`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists),
//!   [`ErrorKind::RevisionMismatch`](crate::ErrorKind::RevisionMismatch)), history,
//!   delete and purge markers, watches (current values first), per-key TTL with expiry
//!   notices; the registry's heartbeats and expiry, discovery, and leader election
//!   build on these.
//!
//! Every timer (TTLs, ack waits, backoffs, timeouts, leases) runs on tokio's clock, so a
//! test with `tokio::time::pause()` (or `#[tokio::test(start_paused = true)]`) decides
//! when things expire, without waiting. Wall-clock values (`lastHeartbeat` and other
//! timestamps, the staleness of registry entries judged from them) still come from the
//! system clock, and so does [`RpcContext::deadline`](crate::RpcContext::deadline), a
//! `std::time::Instant`.
//!
//! # What does not
//!
//! Nothing survives the process and there is no network: no reconnects, server restarts,
//! slow consumers or clusters. Command status records, which a server drops after a
//! day, are kept for the life of the backend. Streams keep every message until a limit
//! (count, age) removes it; byte limits and storage kinds are not enforced. Expiries
//! happen when the bucket is next used or a watcher's timer fires, rather than on a
//! server's schedule.
//!
//! A consumer's prefetch ([`EventSubscription::prefetch`](crate::EventSubscription::prefetch))
//! is ignored: events leave the stream one at a time as the subscription asks for the
//! next, so at most one waits for a free handler. On NATS, up to `prefetch` events wait
//! in the buffer behind a slow handler with their ack wait running; those that run it
//! out are delivered again (to this instance or another), so a handler slower than
//! `ack_wait / prefetch` sees duplicates on a server that it never sees in memory.
//!
//! Test those parts, and wire compatibility with Python peers, against a real server
//! (`aegis-test-support` starts one per test).

mod backend;
pub mod commands;
mod consumer;
pub mod election;
pub mod events;
pub mod kv;
mod kv_log;
mod stream;
pub mod subject;
pub mod transport;

pub use backend::MemoryBackend;
pub use commands::{MemoryCommandQueue, MemoryCommandStore};
pub use election::MemoryLeaseStore;
pub use events::{MemoryEventBus, StoredMessage};
pub use kv::MemoryKvStore;
pub use transport::MemoryTransport;
