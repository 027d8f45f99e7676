//! Adapters: the ports implemented over real technology.
//!
//! [`nats`] talks to a NATS server through async-nats (core NATS, JetStream, KV).

pub mod nats;
