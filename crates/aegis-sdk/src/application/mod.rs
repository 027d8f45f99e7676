//! The application layer: services and clients, written against the ports only.

pub mod client;
pub(crate) mod clock;
pub mod commands;
pub mod component;
pub mod context;
pub mod discovery;
mod dispatch;
pub mod election;
pub mod events;
mod handler;
pub mod health;
pub mod kv;
pub mod metrics;
mod micro;
pub mod propagation;
pub mod registration;
pub mod registry;
pub mod routing;
pub mod selection;
pub mod service;

pub use client::{Call, Client};
pub use commands::{CommandContext, CommandHandle, CommandWorker, SendCommand, WorkerOptions};
pub use component::{Component, ComponentContext, RunningComponent};
pub use context::{HandlerError, RpcContext};
pub use election::{FailoverPolicy, Leadership, LeadershipEvent, LeadershipStatus, LossReason};
pub use service::{Service, ServiceBuilder, ServiceState};
