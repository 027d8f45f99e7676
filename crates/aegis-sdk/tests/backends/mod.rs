//! The two backends every contract test runs against: a real nats-server started for
//! the test, and the in-memory backend. Each contract test file does `mod backends;`
//! and lists its cases in `contract!`, which makes one test per case and backend.

#![allow(dead_code)] // Each test file uses its own part of this.

use aegis_sdk::adapters::memory::MemoryBackend;
use aegis_sdk::{Client, ConnectOptions};
use aegis_test_support::NatsServer;

/// Something that hands out clients connected to one shared server.
pub(crate) enum Backend {
    /// A nats-server process of this test's own.
    Nats(Box<NatsServer>),
    /// One in-memory server.
    Memory(MemoryBackend),
}

impl Backend {
    pub(crate) fn nats() -> Backend {
        Backend::Nats(Box::new(NatsServer::start()))
    }

    pub(crate) fn memory() -> Backend {
        Backend::Memory(MemoryBackend::new())
    }

    /// A new connection.
    pub(crate) async fn client(&self) -> Client {
        match self {
            Backend::Nats(server) => Client::connect(&ConnectOptions::new(server.url()))
                .await
                .expect("connect to the test's nats-server"),
            Backend::Memory(server) => server.client(),
        }
    }
}

/// One module per case, with a test on NATS and one in memory (and one in memory on a
/// paused clock, for the cases listed after `paused:`).
macro_rules! contract {
    ($($name:ident),* $(,)? $(; paused: $($timed:ident),* $(,)?)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats() {
                    super::$name(super::backends::Backend::nats()).await;
                }

                #[tokio::test]
                async fn memory() {
                    super::$name(super::backends::Backend::memory()).await;
                }
            }
        )*
        $($(
            mod $timed {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats() {
                    super::$timed(super::backends::Backend::nats()).await;
                }

                #[tokio::test]
                async fn memory() {
                    super::$timed(super::backends::Backend::memory()).await;
                }

                #[tokio::test(start_paused = true)]
                async fn memory_paused_clock() {
                    super::$timed(super::backends::Backend::memory()).await;
                }
            }
        )*)?
    };
}
