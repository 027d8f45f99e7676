//! The envelopes of the wire contract: RPC request and response, event, command.
//!
//! Each envelope serializes to exactly the contract's snake_case keys (absent optional
//! values are sent as nil), because Python peers reject unknown keys. Anything new that
//! the Python side does not know travels in NATS headers instead.
//!
//! Decoding is lenient about unknown keys and strict about types: [`RpcRequest::decode`]
//! and friends fill the contract's defaults, then validate, and report what was wrong as
//! a [`ErrorKind::Decode`](crate::ErrorKind::Decode) or
//! [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codec;
use super::map_only::MapOnly;
use crate::error::{Error, Result};

/// A new UUID v4 as a string, for `message_id` and `trace_id`.
pub fn new_id() -> String {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut buffer)
        .to_owned()
}

/// Now, as ISO-8601 UTC with offset and microseconds: `2026-01-02T03:04:05.123456+00:00`.
pub fn now_timestamp() -> String {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since_epoch) => timestamp_at(since_epoch),
        Err(_) => format_timestamp(chrono::Utc::now()),
    }
}

/// The timestamp `since_epoch` after 1970. Every envelope carries one, so the part up
/// to the second is kept per thread and only the microseconds are written each time.
fn timestamp_at(since_epoch: std::time::Duration) -> String {
    use std::cell::Cell;

    /// `YYYY-MM-DDTHH:MM:SS.`
    const PREFIX: usize = 20;
    thread_local! {
        static SECOND: Cell<Option<(u64, [u8; PREFIX])>> = const { Cell::new(None) };
    }

    let seconds = since_epoch.as_secs();
    let prefix = match SECOND.get() {
        Some((cached, prefix)) if cached == seconds => prefix,
        _ => {
            let Some(time) = i64::try_from(seconds)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, since_epoch.subsec_nanos()))
            else {
                return format_timestamp(chrono::Utc::now());
            };
            let full = format_timestamp(time);
            // Years outside 0..=9999 take the general formatter: not cached.
            let Some(head) = full.as_bytes().get(..PREFIX) else {
                return full;
            };
            let mut prefix = [0u8; PREFIX];
            prefix.copy_from_slice(head);
            SECOND.set(Some((seconds, prefix)));
            prefix
        }
    };
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&prefix);
    let mut micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend_from_slice(&digits);
    out.extend_from_slice(b"+00:00");
    // Only ASCII was written: the prefix came from `format_timestamp`.
    String::from_utf8(out).unwrap_or_else(|_| format_timestamp(chrono::Utc::now()))
}

/// `time` as ISO-8601 UTC with offset and microseconds. Written out by hand: every
/// envelope carries one, and the general formatter costs more than the rest of encoding.
pub fn format_timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};

    fn push(out: &mut String, value: u32, width: usize) {
        let mut digits = [b'0'; 10];
        let mut rest = value;
        for slot in digits[..width].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        // Only ASCII digits were written.
        out.push_str(std::str::from_utf8(&digits[..width]).unwrap_or("0"));
    }

    let mut out = String::with_capacity(32);
    let year = time.year();
    if !(0..=9999).contains(&year) {
        return time.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    }
    push(&mut out, year as u32, 4);
    out.push('-');
    push(&mut out, time.month(), 2);
    out.push('-');
    push(&mut out, time.day(), 2);
    out.push('T');
    push(&mut out, time.hour(), 2);
    out.push(':');
    push(&mut out, time.minute(), 2);
    out.push(':');
    push(&mut out, time.second(), 2);
    out.push('.');
    // A leap second shows as nanosecond >= 1e9; keep the micros within six digits.
    push(&mut out, (time.nanosecond() / 1_000).min(999_999), 6);
    out.push_str("+00:00");
    out
}

/// Parses a contract timestamp (offset or `Z`) into UTC.
///
/// # Errors
/// [`ErrorKind::Decode`](crate::ErrorKind::Decode) when it is not ISO-8601 with an offset.
pub fn parse_timestamp(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| Error::decode(format!("invalid timestamp {text:?}: {e}")))
}

/// The fields every envelope starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// A UUID v4 identifying this message.
    pub message_id: String,
    /// The trace this message belongs to (a UUID v4 unless propagated).
    pub trace_id: String,
    /// For replies: the `message_id` of the request.
    pub correlation_id: Option<String>,
    /// When the message was made, ISO-8601 UTC with offset.
    pub timestamp: String,
    /// The sender's instance id, when it has one.
    pub source: Option<String>,
    /// The target service name, when there is one.
    pub target: Option<String>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            message_id: new_id(),
            trace_id: new_id(),
            correlation_id: None,
            timestamp: now_timestamp(),
            source: None,
            target: None,
        }
    }
}

/// Declares how an envelope may arrive: the base fields and the listed ones, every one
/// optional (defaults are filled in after decoding). The base fields are spelled out
/// rather than flattened in: serde's `flatten` buffers the whole map first, which
/// costs more than the rest of decoding together.
macro_rules! wire_envelope {
    ($name:ident { $($field:ident: $ty:ty,)* }) => {
        #[derive(Deserialize)]
        #[serde(bound(deserialize = "T: DeserializeOwned"))]
        struct $name<T> {
            #[serde(default)]
            message_id: Option<String>,
            #[serde(default)]
            trace_id: Option<String>,
            #[serde(default)]
            correlation_id: Option<String>,
            #[serde(default)]
            timestamp: Option<String>,
            #[serde(default)]
            source: Option<String>,
            #[serde(default)]
            target: Option<String>,
            $(
                #[serde(default)]
                $field: Option<$ty>,
            )*
        }

        impl<T> $name<T> {
            /// The base fields with their defaults.
            fn take_meta(&mut self) -> Meta {
                Meta {
                    message_id: self.message_id.take().unwrap_or_else(new_id),
                    trace_id: self.trace_id.take().unwrap_or_else(new_id),
                    correlation_id: self.correlation_id.take(),
                    timestamp: self.timestamp.take().unwrap_or_else(now_timestamp),
                    source: self.source.take(),
                    target: self.target.take(),
                }
            }
        }
    };
}

/// The JSON-model type a contract field must have.
#[derive(Clone, Copy)]
enum Expect {
    Str,
    OptStr,
    Map,
    Number,
    Bool,
    Integer,
}

impl Expect {
    fn matches(self, value: &Value) -> bool {
        match self {
            Expect::Str => value.is_string(),
            Expect::OptStr => value.is_string() || value.is_null(),
            Expect::Map => value.is_object() || value.is_null(),
            Expect::Number => value.is_number() || value.is_null(),
            Expect::Bool => value.is_boolean() || value.is_null(),
            Expect::Integer => value.is_i64() || value.is_u64() || value.is_null(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Expect::Str => "a string",
            Expect::OptStr => "a string or nil",
            Expect::Map => "a map",
            Expect::Number => "a number",
            Expect::Bool => "a boolean",
            Expect::Integer => "an integer",
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nil",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

const BASE_FIELDS: [(&str, Expect); 6] = [
    ("message_id", Expect::OptStr),
    ("trace_id", Expect::OptStr),
    ("correlation_id", Expect::OptStr),
    ("timestamp", Expect::OptStr),
    ("source", Expect::OptStr),
    ("target", Expect::OptStr),
];

/// Turns serde's terse complaint about an envelope into one that names the field.
///
/// Runs only on the error path: the bytes are decoded again as plain data and each
/// contract field is checked for its type. When every field has the right shape, the
/// problem lies inside the typed body (`body`), and the original error is kept with
/// that field named, and with serde's own words for what it holds (read as plain data,
/// a wrong type reads "invalid type: string \"x\", expected i64" in either encoding).
fn explain<B: DeserializeOwned>(
    bytes: &[u8],
    fields: &[(&str, Expect)],
    body: &str,
    original: Error,
) -> Error {
    let Ok(value) = codec::decode::<Value>(bytes) else {
        return original;
    };
    let Some(map) = value.as_object() else {
        return Error::decode(format!(
            "an envelope must be a map, got {}",
            type_name(&value)
        ));
    };
    for (name, expect) in BASE_FIELDS.iter().chain(fields) {
        if let Some(field) = map.get(*name) {
            if !expect.matches(field) {
                return Error::decode(format!(
                    "field `{name}` must be {}, got {}",
                    expect.describe(),
                    type_name(field)
                ));
            }
        }
    }
    if let Some(Err(error)) = map.get(body).map(serde_path_to_error::deserialize::<_, B>) {
        let at = match error.path().to_string() {
            path if path == "." => String::new(),
            path => format!("at `{path}`: "),
        };
        let error = error.into_inner();
        return Error::decode(format!("invalid `{body}`: {at}{error}")).with_source(original);
    }
    Error::decode(format!("invalid `{body}`: {}", original.message()))
}

fn non_empty(field: &str, value: Option<String>) -> Result<String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Error::invalid_argument(format!(
            "{field} must not be empty"
        ))),
        None => Err(Error::decode(format!("missing field `{field}`"))),
    }
}

fn positive_seconds(field: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::invalid_argument(format!(
            "{field} must be a number of seconds > 0, got {value}"
        )))
    }
}

fn params_or_empty_map<P: DeserializeOwned>(field: &str, value: Option<P>) -> Result<P> {
    match value {
        Some(v) => Ok(v),
        None => serde_json::from_value(Value::Object(Default::default())).map_err(|e| {
            Error::decode(format!(
                "missing field `{field}` and {{}} is not valid: {e}"
            ))
        }),
    }
}

/// Rejects a JSON-model value that is not a map, for untyped payloads.
fn require_map(field: &str, value: &Value) -> Result<()> {
    if value.is_object() {
        Ok(())
    } else {
        Err(Error::decode(format!("`{field}` must be a map")))
    }
}

/// An RPC request: the `method` to run with `params`, and the caller's `timeout`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcRequest<P = Value> {
    /// A UUID v4 identifying this message.
    pub message_id: String,
    /// The trace this message belongs to.
    pub trace_id: String,
    /// Unused on requests; nil.
    pub correlation_id: Option<String>,
    /// When the message was made.
    pub timestamp: String,
    /// The caller's instance id, when it has one.
    pub source: Option<String>,
    /// The target service name.
    pub target: Option<String>,
    /// The method to run.
    pub method: String,
    /// Its parameters (a map on the wire).
    pub params: P,
    /// How long the caller waits, in seconds (default 5.0).
    pub timeout: f64,
}

/// An RPC request to encode, borrowing its parts: the same keys as [`RpcRequest`],
/// without copying the method, params or ids into a new value first.
#[derive(Serialize)]
pub(crate) struct RpcRequestRef<'a, P> {
    pub(crate) message_id: &'a str,
    pub(crate) trace_id: &'a str,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) timestamp: &'a str,
    pub(crate) source: Option<&'a str>,
    pub(crate) target: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) params: &'a P,
    pub(crate) timeout: f64,
}

wire_envelope!(RpcRequestWire {
    method: String,
    params: T,
    timeout: f64,
});

impl<P> RpcRequest<P> {
    /// The default RPC timeout of the contract, in seconds.
    pub const DEFAULT_TIMEOUT_SECS: f64 = 5.0;

    /// A request for `method` with `params` and the contract's defaults.
    pub fn new(method: impl Into<String>, params: P) -> Self {
        let meta = Meta::default();
        RpcRequest {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: None,
            timestamp: meta.timestamp,
            source: None,
            target: None,
            method: method.into(),
            params,
            timeout: Self::DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl<P: DeserializeOwned> RpcRequest<P> {
    /// Decodes and validates a request (either encoding).
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) for bytes that are not a request
    /// envelope or whose params are not a `P`;
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for an empty
    /// method or a timeout that is not > 0.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        // Params are a map on the wire: serde alone would build a struct from an array.
        let mut wire: RpcRequestWire<MapOnly<P>> = codec::decode(bytes).map_err(|e| {
            explain::<MapOnly<P>>(
                bytes,
                &[
                    ("method", Expect::Str),
                    ("params", Expect::Map),
                    ("timeout", Expect::Number),
                ],
                "params",
                e,
            )
        })?;
        let meta = wire.take_meta();
        let method = non_empty("method", wire.method)?;
        let timeout = positive_seconds(
            "timeout",
            wire.timeout.unwrap_or(Self::DEFAULT_TIMEOUT_SECS),
        )?;
        let params = params_or_empty_map("params", wire.params.map(|MapOnly(p)| p))?;
        Ok(RpcRequest {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: meta.correlation_id,
            timestamp: meta.timestamp,
            source: meta.source,
            target: meta.target,
            method,
            params,
            timeout,
        })
    }
}

impl RpcRequest<Value> {
    /// Like [`RpcRequest::decode`], and also checks that untyped params are a map.
    ///
    /// # Errors
    /// As [`RpcRequest::decode`], plus [`ErrorKind::Decode`](crate::ErrorKind::Decode)
    /// when `params` is not a map.
    pub fn decode_untyped(bytes: &[u8]) -> Result<Self> {
        let request = Self::decode(bytes)?;
        require_map("params", &request.params)?;
        Ok(request)
    }
}

/// Reads only the message and trace ids of an envelope, for answering a request whose
/// body could not be decoded.
pub fn peek_ids(bytes: &[u8]) -> Option<(Option<String>, Option<String>)> {
    #[derive(Deserialize)]
    struct Ids {
        #[serde(default)]
        message_id: Option<String>,
        #[serde(default)]
        trace_id: Option<String>,
    }
    let ids: Ids = codec::decode(bytes).ok()?;
    Some((ids.message_id, ids.trace_id))
}

/// An RPC response: `success` with a `result`, or a failure with an `error` text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcResponse<R = Value> {
    /// A UUID v4 identifying this message.
    pub message_id: String,
    /// The trace of the request.
    pub trace_id: String,
    /// The request's `message_id`.
    pub correlation_id: Option<String>,
    /// When the message was made.
    pub timestamp: String,
    /// The answering instance's id.
    pub source: Option<String>,
    /// Unused on responses; nil.
    pub target: Option<String>,
    /// Whether the call succeeded.
    pub success: bool,
    /// The result on success; nil on failure.
    pub result: Option<R>,
    /// Nil on success; a non-empty text on failure, starting with a well-known code when
    /// there is one.
    pub error: Option<String>,
}

wire_envelope!(RpcResponseWire {
    success: bool,
    result: T,
    error: String,
});

impl<R> RpcResponse<R> {
    /// A successful reply to the request with `request_id`.
    pub fn ok(request_id: Option<String>, trace_id: Option<String>, result: R) -> Self {
        Self::build(request_id, trace_id, true, Some(result), None)
    }

    /// A failed reply to the request with `request_id`.
    pub fn failure(
        request_id: Option<String>,
        trace_id: Option<String>,
        error: impl Into<String>,
    ) -> Self {
        let mut error = error.into();
        if error.is_empty() {
            error = "unknown error".to_owned();
        }
        Self::build(request_id, trace_id, false, None, Some(error))
    }

    fn build(
        request_id: Option<String>,
        trace_id: Option<String>,
        success: bool,
        result: Option<R>,
        error: Option<String>,
    ) -> Self {
        RpcResponse {
            message_id: new_id(),
            trace_id: trace_id.unwrap_or_else(new_id),
            correlation_id: request_id,
            timestamp: now_timestamp(),
            source: None,
            target: None,
            success,
            result,
            error,
        }
    }
}

impl<R: DeserializeOwned> RpcResponse<R> {
    /// Decodes a response (either encoding).
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) for bytes that are not a response
    /// envelope, or a result that is not an `R`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut wire: RpcResponseWire<R> = codec::decode(bytes).map_err(|e| {
            explain::<R>(
                bytes,
                &[("success", Expect::Bool), ("error", Expect::OptStr)],
                "result",
                e,
            )
        })?;
        let meta = wire.take_meta();
        let success = wire
            .success
            .ok_or_else(|| Error::decode("missing field `success`"))?;
        Ok(RpcResponse {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: meta.correlation_id,
            timestamp: meta.timestamp,
            source: meta.source,
            target: meta.target,
            success,
            result: wire.result,
            error: wire.error,
        })
    }
}

/// A domain event, published to `events.{domain}.{event_type}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event<T = Value> {
    /// A UUID v4 identifying this event; also its deduplication id.
    pub message_id: String,
    /// The trace this event belongs to.
    pub trace_id: String,
    /// The message that caused this event, if any.
    pub correlation_id: Option<String>,
    /// When the event was made.
    pub timestamp: String,
    /// The publisher's instance id.
    pub source: Option<String>,
    /// Unused; nil.
    pub target: Option<String>,
    /// The domain, first subject token after `events.`.
    pub domain: String,
    /// The event type, second subject token.
    pub event_type: String,
    /// The payload (a map on the wire).
    pub payload: T,
    /// Schema version, `^\d+\.\d+(\.\d+)?$` (default `1.0`).
    pub version: String,
}

wire_envelope!(EventWire {
    domain: String,
    event_type: String,
    payload: T,
    version: String,
});

/// `^\d+\.\d+(\.\d+)?$`
pub fn is_valid_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl<T> Event<T> {
    /// The default event version.
    pub const DEFAULT_VERSION: &'static str = "1.0";

    /// An event with the contract's defaults.
    pub fn new(domain: impl Into<String>, event_type: impl Into<String>, payload: T) -> Self {
        let meta = Meta::default();
        Event {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: None,
            timestamp: meta.timestamp,
            source: None,
            target: None,
            domain: domain.into(),
            event_type: event_type.into(),
            payload,
            version: Self::DEFAULT_VERSION.to_owned(),
        }
    }
}

impl<T: DeserializeOwned> Event<T> {
    /// Decodes and validates an event (either encoding).
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) or
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) as for requests;
    /// also for a version that is not `digits.digits[.digits]`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut wire: EventWire<T> = codec::decode(bytes).map_err(|e| {
            explain::<T>(
                bytes,
                &[
                    ("domain", Expect::Str),
                    ("event_type", Expect::Str),
                    ("payload", Expect::Map),
                    ("version", Expect::Str),
                ],
                "payload",
                e,
            )
        })?;
        let meta = wire.take_meta();
        let domain = non_empty("domain", wire.domain)?;
        let event_type = non_empty("event_type", wire.event_type)?;
        let version = wire
            .version
            .unwrap_or_else(|| Self::DEFAULT_VERSION.to_owned());
        if !is_valid_version(&version) {
            return Err(Error::invalid_argument(format!(
                "invalid event version {version:?}"
            )));
        }
        let payload = params_or_empty_map("payload", wire.payload)?;
        Ok(Event {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: meta.correlation_id,
            timestamp: meta.timestamp,
            source: meta.source,
            target: meta.target,
            domain,
            event_type,
            payload,
            version,
        })
    }
}

/// How urgently a command should run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Runs when nothing more urgent waits.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Runs before normal and low.
    High,
    /// Runs before everything else.
    Critical,
}

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL_DESCENDING: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The wire name: `low`, `normal`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            other => Err(Error::invalid_argument(format!(
                "invalid priority {other:?}: expected low, normal, high or critical"
            ))),
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A long-running command, sent to `commands.{service}.{command}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command<T = Value> {
    /// A UUID v4 identifying this command; also its deduplication id.
    pub message_id: String,
    /// The trace this command belongs to.
    pub trace_id: String,
    /// The message that caused this command, if any.
    pub correlation_id: Option<String>,
    /// When the command was made.
    pub timestamp: String,
    /// The sender's instance id.
    pub source: Option<String>,
    /// The target service name.
    pub target: Option<String>,
    /// The command name.
    pub command: String,
    /// Its payload (a map on the wire).
    pub payload: T,
    /// Priority (default normal).
    pub priority: Priority,
    /// How many times a failure is retried (default 3).
    pub max_retries: u32,
    /// How long the command may run, in seconds (default 300.0).
    pub timeout: f64,
}

wire_envelope!(CommandWire {
    command: String,
    payload: T,
    priority: String,
    max_retries: i64,
    timeout: f64,
});

impl<T> Command<T> {
    /// The default retry budget.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// The default command timeout, in seconds.
    pub const DEFAULT_TIMEOUT_SECS: f64 = 300.0;

    /// A command with the contract's defaults.
    pub fn new(command: impl Into<String>, payload: T) -> Self {
        let meta = Meta::default();
        Command {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: None,
            timestamp: meta.timestamp,
            source: None,
            target: None,
            command: command.into(),
            payload,
            priority: Priority::Normal,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            timeout: Self::DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl<T: DeserializeOwned> Command<T> {
    /// Decodes and validates a command (either encoding).
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) or
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument): a missing or
    /// empty command, an unknown priority, negative retries, a timeout that is not > 0.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut wire: CommandWire<T> = codec::decode(bytes).map_err(|e| {
            explain::<T>(
                bytes,
                &[
                    ("command", Expect::Str),
                    ("payload", Expect::Map),
                    ("priority", Expect::Str),
                    ("max_retries", Expect::Integer),
                    ("timeout", Expect::Number),
                ],
                "payload",
                e,
            )
        })?;
        let meta = wire.take_meta();
        let command = non_empty("command", wire.command)?;
        let priority = match wire.priority {
            Some(p) => p.parse()?,
            None => Priority::Normal,
        };
        let max_retries = match wire.max_retries {
            None => Self::DEFAULT_MAX_RETRIES,
            Some(n) => u32::try_from(n).map_err(|_| {
                Error::invalid_argument(format!("max_retries must be >= 0, got {n}"))
            })?,
        };
        let timeout = positive_seconds(
            "timeout",
            wire.timeout.unwrap_or(Self::DEFAULT_TIMEOUT_SECS),
        )?;
        let payload = params_or_empty_map("payload", wire.payload)?;
        Ok(Command {
            message_id: meta.message_id,
            trace_id: meta.trace_id,
            correlation_id: meta.correlation_id,
            timestamp: meta.timestamp,
            source: meta.source,
            target: meta.target,
            command,
            payload,
            priority,
            max_retries,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests;
