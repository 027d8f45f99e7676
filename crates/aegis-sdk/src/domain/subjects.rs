//! Subject and queue-group names of the wire contract.

use super::names::{EventDomain, EventType, InstanceId, MethodName, ServiceName};

/// `rpc.{service}.{method}`: where responders of a method listen.
pub fn rpc(service: &ServiceName, method: &MethodName) -> String {
    format!("rpc.{service}.{method}")
}

/// `rpc.{service}`: the queue group that load-balances a service's responders.
pub fn rpc_queue_group(service: &ServiceName) -> String {
    format!("rpc.{service}")
}

/// `rpc.{service}.{method}.{instance}`: a subject only one instance answers on, used
/// by discovery to route a call to a chosen instance. Python peers do not listen here.
pub fn rpc_instance(service: &ServiceName, method: &MethodName, instance: &InstanceId) -> String {
    format!("rpc.{service}.{method}.{instance}")
}

/// The method an instance answers on its own subject to say it is alive:
/// `rpc.{service}._alive.{instance}`, with an empty reply. Method names cannot start
/// with `_`, so it never meets a real method. Clients ask it while they wait on an
/// exclusive call, to tell a slow leader from a dead one.
pub const LIVENESS_METHOD: &str = "_alive";

/// `rpc.{service}._alive.{instance}`: see [`LIVENESS_METHOD`].
pub fn liveness(service: &ServiceName, instance: &InstanceId) -> String {
    format!("rpc.{service}.{LIVENESS_METHOD}.{instance}")
}

/// `events.{domain}.{event_type}`.
pub fn event(domain: &EventDomain, event_type: &EventType) -> String {
    format!("events.{domain}.{event_type}")
}

/// `commands.{service}.{command}`.
pub fn command(service: &ServiceName, command: &MethodName) -> String {
    format!("commands.{service}.{command}")
}
