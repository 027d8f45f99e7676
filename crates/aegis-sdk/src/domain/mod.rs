//! The domain layer: names, envelopes and codes that mean the same on every transport.
//!
//! Nothing here knows about NATS or the network; the wire contract shared with the Python
//! SDK is expressed as plain types with their validation rules.

pub mod codec;
pub mod command_status;
pub mod election;
pub mod envelope;
pub mod error_code;
pub mod event_pattern;
pub(crate) mod hot;
pub mod instance;
pub mod kv_key;
pub(crate) mod map_only;
pub(crate) mod map_probe;
pub mod micro;
pub mod names;
pub mod subjects;
pub mod trace;

pub use codec::Encoding;
pub use envelope::{Command, Event, Priority, RpcRequest, RpcResponse};
pub use names::{EventDomain, EventType, InstanceId, MethodName, ServiceName};
