//! The NATS service API ("micro", ADR-32): the subjects and the JSON replies with which
//! standard NATS tooling (`nats micro ls`, `nats micro stats`) finds and inspects
//! services.
//!
//! An instance answers `$SRV.{VERB}`, `$SRV.{VERB}.{name}` and `$SRV.{VERB}.{name}.{id}`
//! for the verbs `PING`, `INFO` and `STATS`. Durations are integer nanoseconds;
//! `started` is RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The prefix of the service API subjects.
pub const PREFIX: &str = "$SRV";

/// The `type` of a ping reply.
pub const PING_RESPONSE_TYPE: &str = "io.nats.micro.v1.ping_response";
/// The `type` of an info reply.
pub const INFO_RESPONSE_TYPE: &str = "io.nats.micro.v1.info_response";
/// The `type` of a stats reply.
pub const STATS_RESPONSE_TYPE: &str = "io.nats.micro.v1.stats_response";

/// A service API verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `PING`: who is there.
    Ping,
    /// `INFO`: the endpoints.
    Info,
    /// `STATS`: per-endpoint statistics.
    Stats,
}

impl Verb {
    /// Every verb.
    pub const ALL: [Verb; 3] = [Verb::Ping, Verb::Info, Verb::Stats];

    /// The verb as it appears in subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Ping => "PING",
            Verb::Info => "INFO",
            Verb::Stats => "STATS",
        }
    }

    /// The three subjects an instance answers for this verb: for all services, by
    /// name, by name and id.
    pub fn subjects(self, name: &str, id: &str) -> [String; 3] {
        let verb = self.as_str();
        [
            format!("{PREFIX}.{verb}"),
            format!("{PREFIX}.{verb}.{name}"),
            format!("{PREFIX}.{verb}.{name}.{id}"),
        ]
    }
}

/// The reply to `PING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    /// [`PING_RESPONSE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The service name.
    pub name: String,
    /// The instance id.
    pub id: String,
    /// The service version.
    pub version: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// One endpoint in the reply to `INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// The endpoint name (the RPC method).
    pub name: String,
    /// The subject it is served on.
    pub subject: String,
    /// Its queue group.
    pub queue_group: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The reply to `INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// [`INFO_RESPONSE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The service name.
    pub name: String,
    /// The instance id.
    pub id: String,
    /// The service version.
    pub version: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A description of the service.
    #[serde(default)]
    pub description: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointInfo>,
}

/// One endpoint in the reply to `STATS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// The endpoint name (the RPC method).
    pub name: String,
    /// The subject it is served on.
    pub subject: String,
    /// Its queue group.
    pub queue_group: String,
    /// Requests this instance received.
    pub num_requests: u64,
    /// Requests that ended in an error reply.
    pub num_errors: u64,
    /// The last error reply's text, or empty.
    pub last_error: String,
    /// Total time spent handling requests, in nanoseconds.
    pub processing_time: u64,
    /// `processing_time / num_requests`, in nanoseconds (0 before the first request).
    pub average_processing_time: u64,
    /// Endpoint-specific statistics; always sent, empty for Aegis services. Optional in
    /// the NATS schema, but some clients (nats-py's `ServiceStats.from_dict`) need it.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The reply to `STATS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// [`STATS_RESPONSE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The service name.
    pub name: String,
    /// The instance id.
    pub id: String,
    /// The service version.
    pub version: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// When the instance started, RFC 3339.
    pub started: String,
    /// Per-endpoint statistics.
    pub endpoints: Vec<EndpointStats>,
}
