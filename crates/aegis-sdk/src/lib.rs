//! # aegis-sdk
//!
//! Inter-process communication for microservices over NATS: RPC with load-balanced
//! instances, durable events, long-running commands, a KV store with a service registry
//! and discovery, and single-active services. Wire-compatible with the Python AegisSDK.
//!
//! The crate is laid out in hexagonal layers:
//!
//! - [`domain`]: names, envelopes and codes of the wire contract; no I/O.
//! - [`ports`]: the traits the application layer needs from the outside world.
//! - [`application`]: services and clients, written against the ports.
//! - [`adapters`]: the ports implemented over NATS, and in memory for unit tests
//!   (feature `testing`, see `adapters::memory`); Prometheus and OpenTelemetry.
//!
//! Observability: [`application::metrics`] (counters, gauges and timings, exposed by
//! [`adapters::prometheus`]), [`application::propagation`] with [`domain::trace`]
//! (W3C trace context across RPC, events and commands), and the NATS service API
//! (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) plus [`application::health`], answered
//! by every running service.
//!
//! # A service and a call
//!
//! ```no_run
//! use aegis_sdk::{Client, ConnectOptions, HandlerError, RpcContext, Service};
//! use serde_json::{json, Value};
//!
//! # async fn run() -> aegis_sdk::Result<()> {
//! let client = Client::connect(&ConnectOptions::from_env()?).await?;
//!
//! let service = Service::builder("echo-service")
//!     .rpc("echo", |ctx: RpcContext, params: Value| async move {
//!         Ok::<_, HandlerError>(json!({"echo": params["message"], "instance": ctx.instance_id().as_str()}))
//!     })
//!     .build()?;
//! service.start(&client).await?;
//!
//! let reply: Value = client.call("echo-service", "echo", json!({"message": "hi"})).await?;
//! assert_eq!(reply["echo"], "hi");
//!
//! service.stop().await?;
//! # Ok(()) }
//! ```

pub mod adapters;
pub mod application;
pub mod domain;
mod error;
pub mod ports;

pub use adapters::nats::{ConnectOptions, NatsTransport, ReconnectPolicy};
pub use application::events::{
    DeliveryMode, EventContext, EventPublisher, EventSubscription, StartPolicy,
};
pub use application::{
    Call, Client, CommandContext, CommandHandle, FailoverPolicy, HandlerError, Leadership,
    LeadershipEvent, LeadershipStatus, LossReason, RpcContext, Service, ServiceBuilder,
    ServiceState,
};
pub use domain::command_status::{CommandState, CommandStatus, Progress};
pub use domain::{Encoding, EventDomain, EventType, InstanceId, MethodName, Priority, ServiceName};
pub use error::{Error, ErrorKind, Result};

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
