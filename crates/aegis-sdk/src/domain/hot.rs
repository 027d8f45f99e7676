//! The RPC envelopes in the forms the hot path uses: decoded with strings borrowed from
//! the message, encoded from borrowed parts.
//!
//! They read and write exactly the keys of [`RpcRequest`](super::RpcRequest) and
//! [`RpcResponse`](super::RpcResponse), with the same defaults and validation; they
//! only avoid copying ids and texts that are looked at once and dropped.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec;
use super::envelope::{self, RpcRequest};
use crate::error::{Error, Result};

/// A request as a service reads it.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a, P: DeserializeOwned"))]
struct RequestView<'a, P> {
    #[serde(default, borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    target: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    params: Option<P>,
    #[serde(default)]
    timeout: Option<f64>,
}

/// What a service needs of a request, validated.
pub(crate) struct IncomingRequest<P> {
    pub(crate) message_id: String,
    pub(crate) trace_id: String,
    pub(crate) source: Option<String>,
    pub(crate) params: P,
    pub(crate) timeout: f64,
}

/// Decodes a request as [`RpcRequest::decode`] does, keeping only what a service uses.
///
/// # Errors
/// As [`RpcRequest::decode`].
pub(crate) fn decode_request<P: DeserializeOwned>(bytes: &[u8]) -> Result<IncomingRequest<P>> {
    let view: RequestView<'_, P> = match codec::decode_borrowed(bytes) {
        Ok(view) => view,
        // The slow path names the field that was wrong.
        Err(_) => return RpcRequest::<P>::decode(bytes).map(IncomingRequest::from),
    };
    let _ = (view.correlation_id, view.timestamp, view.target);
    match view.method.as_deref() {
        Some("") => return Err(Error::invalid_argument("method must not be empty")),
        None => return Err(Error::decode("missing field `method`")),
        Some(_) => {}
    }
    let timeout = view
        .timeout
        .unwrap_or(RpcRequest::<P>::DEFAULT_TIMEOUT_SECS);
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(Error::invalid_argument(format!(
            "timeout must be a number of seconds > 0, got {timeout}"
        )));
    }
    let params = match view.params {
        Some(params) => params,
        None => RpcRequest::<P>::decode(bytes)?.params,
    };
    Ok(IncomingRequest {
        message_id: view
            .message_id
            .map_or_else(envelope::new_id, Cow::into_owned),
        trace_id: view.trace_id.map_or_else(envelope::new_id, Cow::into_owned),
        source: view.source.map(Cow::into_owned),
        params,
        timeout,
    })
}

impl<P> From<RpcRequest<P>> for IncomingRequest<P> {
    fn from(request: RpcRequest<P>) -> Self {
        IncomingRequest {
            message_id: request.message_id,
            trace_id: request.trace_id,
            source: request.source,
            params: request.params,
            timeout: request.timeout,
        }
    }
}

/// An RPC response to encode from borrowed parts; the keys of
/// [`RpcResponse`](super::RpcResponse).
#[derive(Serialize)]
pub(crate) struct ResponseRef<'a, R> {
    pub(crate) message_id: &'a str,
    pub(crate) trace_id: &'a str,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) timestamp: &'a str,
    pub(crate) source: Option<&'a str>,
    pub(crate) target: Option<&'a str>,
    pub(crate) success: bool,
    pub(crate) result: Option<&'a R>,
    pub(crate) error: Option<&'a str>,
}

/// A response as a caller reads it.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a, R: DeserializeOwned"))]
struct ResponseView<'a, R> {
    #[serde(default, borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    target: Option<Cow<'a, str>>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    result: Option<R>,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
}

/// Decodes the reply to the request `request_id` into its result, or the remote error.
///
/// # Errors
/// [`ErrorKind::Decode`](crate::ErrorKind::Decode) for a reply that is no response, or
/// correlates to another request; [`Error::remote`] for a failure reply.
pub(crate) fn decode_response<R: DeserializeOwned>(bytes: &[u8], request_id: &str) -> Result<R> {
    let view: ResponseView<'_, R> = match codec::decode_borrowed(bytes) {
        Ok(view) => view,
        Err(_) => {
            // The slow path names the field that was wrong.
            return Err(super::RpcResponse::<R>::decode(bytes)
                .err()
                .unwrap_or_else(|| Error::decode("invalid response")));
        }
    };
    let _ = (
        view.message_id,
        view.trace_id,
        view.timestamp,
        view.source,
        view.target,
    );
    if let Some(correlation) = view.correlation_id.as_deref() {
        if correlation != request_id {
            return Err(Error::decode(format!(
                "reply correlates to {correlation}, not to request {request_id}"
            )));
        }
    }
    match view.success {
        None => Err(Error::decode("missing field `success`")),
        Some(false) => Err(Error::remote(view.error.map_or_else(
            || "remote call failed without an error text".to_owned(),
            Cow::into_owned,
        ))),
        Some(true) => match view.result {
            Some(result) => Ok(result),
            None => serde_json::from_value(serde_json::Value::Null)
                .map_err(|e| Error::decode(format!("reply has no result: {e}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::codec::Encoding;
    use crate::domain::RpcResponse;
    use crate::ErrorKind;

    #[test]
    fn borrowed_request_decoding_agrees_with_the_owned_one() {
        let mut request = RpcRequest::new("echo", json!({"message": "hé \"quoted\""}));
        request.source = Some("caller-1".into());
        for encoding in [Encoding::MessagePack, Encoding::Json] {
            let bytes = encoding.encode(&request).unwrap();
            let incoming = decode_request::<Value>(&bytes).unwrap();
            assert_eq!(incoming.message_id, request.message_id);
            assert_eq!(incoming.trace_id, request.trace_id);
            assert_eq!(incoming.source.as_deref(), Some("caller-1"));
            assert_eq!(incoming.params, request.params);
            assert_eq!(incoming.timeout, 5.0);
        }
        for (value, kind) in [
            (json!({"params": {}}), ErrorKind::Decode),
            (json!({"method": ""}), ErrorKind::InvalidArgument),
            (
                json!({"method": "m", "timeout": 0}),
                ErrorKind::InvalidArgument,
            ),
            (json!({"method": "m", "timestamp": 5}), ErrorKind::Decode),
        ] {
            let bytes = Encoding::MessagePack.encode(&value).unwrap();
            let err = decode_request::<Value>(&bytes).err().unwrap();
            assert_eq!(err.kind(), kind, "{value}");
        }
    }

    #[test]
    fn borrowed_response_encoding_and_decoding() {
        let owned = RpcResponse::ok(Some("req-1".into()), Some("t".into()), json!({"a": 1}));
        let borrowed = ResponseRef {
            message_id: &owned.message_id,
            trace_id: &owned.trace_id,
            correlation_id: Some("req-1"),
            timestamp: &owned.timestamp,
            source: None,
            target: None,
            success: true,
            result: owned.result.as_ref(),
            error: None,
        };
        for encoding in [Encoding::MessagePack, Encoding::Json] {
            let bytes = encoding.encode(&borrowed).unwrap();
            assert_eq!(bytes, encoding.encode(&owned).unwrap());
            let result: Value = decode_response(&bytes, "req-1").unwrap();
            assert_eq!(result, json!({"a": 1}));
            let err = decode_response::<Value>(&bytes, "other").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode);
        }
        let failure: RpcResponse<()> =
            RpcResponse::failure(Some("r".into()), None, "NOT_ACTIVE: standby");
        let bytes = Encoding::Json.encode(&failure).unwrap();
        let err = decode_response::<Value>(&bytes, "r").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotActive);
    }
}
