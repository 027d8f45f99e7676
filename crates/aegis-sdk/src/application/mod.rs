//! The application layer: services and clients, written against the ports only.

pub mod client;
pub mod commands;
pub mod component;
pub mod context;
mod dispatch;
mod handler;
pub mod service;

pub use client::{Call, Client};
pub use commands::{CommandContext, CommandHandle, CommandWorker, SendCommand, WorkerOptions};
pub use component::{Component, ComponentContext, RunningComponent};
pub use context::{HandlerError, RpcContext};
pub use service::{Service, ServiceBuilder, ServiceState};
