//! The application layer: services and clients, written against the ports only.

pub mod client;
pub mod component;
pub mod context;
mod dispatch;
pub mod election;
mod handler;
pub mod service;

pub use client::{Call, Client};
pub use component::{Component, ComponentContext, RunningComponent};
pub use context::{HandlerError, RpcContext};
pub use election::{FailoverPolicy, Leadership, LeadershipEvent, LeadershipStatus, LossReason};
pub use service::{Service, ServiceBuilder, ServiceState};
