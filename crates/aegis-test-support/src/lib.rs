//! Test support for `aegis-sdk`: real `nats-server` processes per test.
//!
//! Every [`NatsServer`] runs its own `nats-server` child process on free loopback ports
//! (client port and HTTP monitoring port), with JetStream storing into a fresh temporary
//! directory. Nothing here relies on a server at `4222`. The API is synchronous
//! (`std::process`), so it can be used from plain `#[test]`s and from `#[tokio::test]`s
//! alike: starting a server blocks for the few tens of milliseconds it takes to become
//! ready.
//!
//! * [`NatsServer::start`] / [`NatsServer::builder`] start a single server and wait until
//!   its `/healthz` endpoint reports ready.
//! * [`NatsServer::stop`], [`NatsServer::start_again`] and [`NatsServer::restart`] simulate
//!   outages: the port and the JetStream store directory are kept, so clients can
//!   reconnect and streams survive.
//! * [`NatsCluster::start`] starts an n-node JetStream cluster and waits until a meta
//!   leader is elected.
//!
//! Dropping a server kills its process, waits for it and removes its temporary
//! directory. As a second line of defence (for a test process that is killed outright,
//! so that no destructor runs) each server is watched by a tiny `/bin/sh` watchdog that
//! kills it once the test process is gone.
//!
//! The binary is taken from the `AEGIS_NATS_SERVER` environment variable, or else from
//! `PATH` (see [`nats_server_binary`]); run `scripts/install-nats-server` to install it.
//!
//! ```
//! use aegis_test_support::NatsServer;
//!
//! let mut server = NatsServer::start();
//! assert!(server.url().starts_with("nats://127.0.0.1:"));
//! let port = server.port();
//! server.restart();
//! assert_eq!(server.port(), port);
//! ```

mod binary;
mod cluster;
mod http;
mod server;
#[cfg(test)]
mod tests;

pub use binary::{free_port, nats_server_binary};
pub use cluster::NatsCluster;
pub use server::{NatsServer, NatsServerBuilder};
