//! Adapters: the ports implemented over real technology.
//!
//! [`nats`] talks to a NATS server through async-nats (core NATS, JetStream, KV);
//! `memory` (feature `testing`) keeps everything in process, for users' unit tests.

pub(crate) mod kv_wire;
#[cfg(feature = "testing")]
pub mod memory;
pub mod nats;
#[cfg(feature = "otel")]
pub mod otel;
pub mod prometheus;
