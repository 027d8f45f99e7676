//! The catalogue of series: each kind of operation and gauge with its names, labels
//! and help text, and the outcomes an operation is counted by.

use crate::error::{Error, ErrorKind};

/// A kind of counted and timed operation: its metric names and label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    RpcServer,
    RpcClient,
    EventPublish,
    EventHandle,
    CommandSend,
    CommandHandle,
    Kv,
    RegistryHeartbeat,
    Election,
}

impl OpKind {
    pub(crate) const ALL: [OpKind; 9] = [
        OpKind::RpcServer,
        OpKind::RpcClient,
        OpKind::EventPublish,
        OpKind::EventHandle,
        OpKind::CommandSend,
        OpKind::CommandHandle,
        OpKind::Kv,
        OpKind::RegistryHeartbeat,
        OpKind::Election,
    ];

    /// The counter's name without `_total`.
    pub(crate) fn counter_name(self) -> &'static str {
        match self {
            OpKind::RpcServer => "aegis_rpc_server_requests",
            OpKind::RpcClient => "aegis_rpc_client_requests",
            OpKind::EventPublish => "aegis_events_published",
            OpKind::EventHandle => "aegis_events_handled",
            OpKind::CommandSend => "aegis_commands_sent",
            OpKind::CommandHandle => "aegis_commands_handled",
            OpKind::Kv => "aegis_kv_operations",
            OpKind::RegistryHeartbeat => "aegis_registry_heartbeats",
            OpKind::Election => "aegis_election_operations",
        }
    }

    /// The histogram's name without `_seconds`.
    pub(crate) fn duration_name(self) -> &'static str {
        match self {
            OpKind::RpcServer => "aegis_rpc_server_duration",
            OpKind::RpcClient => "aegis_rpc_client_duration",
            OpKind::EventPublish => "aegis_events_publish_duration",
            OpKind::EventHandle => "aegis_events_handle_duration",
            OpKind::CommandSend => "aegis_commands_send_duration",
            OpKind::CommandHandle => "aegis_commands_handle_duration",
            OpKind::Kv => "aegis_kv_operation_duration",
            OpKind::RegistryHeartbeat => "aegis_registry_heartbeat_duration",
            OpKind::Election => "aegis_election_operation_duration",
        }
    }

    /// The in-flight gauge's name, for the kinds that have one.
    pub(crate) fn in_flight_name(self) -> Option<&'static str> {
        match self {
            OpKind::RpcServer => Some("aegis_rpc_server_in_flight"),
            OpKind::RpcClient => Some("aegis_rpc_client_in_flight"),
            OpKind::EventHandle => Some("aegis_events_handle_in_flight"),
            OpKind::CommandHandle => Some("aegis_commands_handle_in_flight"),
            _ => None,
        }
    }

    pub(crate) fn label_names(self) -> &'static [&'static str] {
        match self {
            OpKind::RpcServer | OpKind::RpcClient => &["service", "method"],
            OpKind::EventPublish => &["domain", "event_type"],
            // The subscription's pattern, not the event's type: publishers choose types,
            // and each would be a series of its own.
            OpKind::EventHandle => &["service", "pattern"],
            OpKind::CommandSend | OpKind::CommandHandle => &["service", "command"],
            OpKind::Kv => &["bucket", "operation"],
            OpKind::RegistryHeartbeat => &["service"],
            OpKind::Election => &["service", "group", "operation"],
        }
    }

    pub(crate) fn help(self) -> &'static str {
        match self {
            OpKind::RpcServer => "RPC requests handled by this process's services",
            OpKind::RpcClient => "RPC calls made by this process",
            OpKind::EventPublish => "Events published (until stored)",
            OpKind::EventHandle => "Event deliveries handled",
            OpKind::CommandSend => "Commands sent (until queued)",
            OpKind::CommandHandle => "Command runs by this process's workers",
            OpKind::Kv => "KV operations",
            OpKind::RegistryHeartbeat => "Service registry heartbeats",
            OpKind::Election => "Leader election steps (acquire, renew, release)",
        }
    }
}

/// A kind of gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GaugeKind {
    ElectionLeader,
}

impl GaugeKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GaugeKind::ElectionLeader => "aegis_election_leader",
        }
    }

    pub(crate) fn label_names(self) -> &'static [&'static str] {
        match self {
            GaugeKind::ElectionLeader => &["service", "group", "instance"],
        }
    }

    pub(crate) fn help(self) -> &'static str {
        match self {
            GaugeKind::ElectionLeader => "1 while this instance leads its single-active group",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    Ok,
    Error,
    Timeout,
    NoResponders,
    NotActive,
    Cancelled,
    Conflict,
    Lost,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::NoResponders,
        Outcome::NotActive,
        Outcome::Cancelled,
        Outcome::Conflict,
        Outcome::Lost,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::NoResponders => "no_responders",
            Outcome::NotActive => "not_active",
            Outcome::Cancelled => "cancelled",
            Outcome::Conflict => "conflict",
            Outcome::Lost => "lost",
        }
    }

    /// The outcome of a result, by its error's kind.
    pub(crate) fn of<T>(result: &crate::Result<T>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::of_error(error),
        }
    }

    pub(crate) fn of_error(error: &Error) -> Outcome {
        match error.kind() {
            ErrorKind::Timeout => Outcome::Timeout,
            ErrorKind::NoResponders => Outcome::NoResponders,
            ErrorKind::NotActive => Outcome::NotActive,
            ErrorKind::Cancelled => Outcome::Cancelled,
            ErrorKind::RevisionMismatch | ErrorKind::AlreadyExists => Outcome::Conflict,
            _ => Outcome::Error,
        }
    }
}
