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
use super::map_only::MapOnly;
use crate::error::{Error, Result};

mod walk;
use walk::{Scalar, Walk};

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
    params: Option<MapOnly<P>>,
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
    if let Some(request) = walk_request(bytes) {
        return Ok(request);
    }
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
        Some(MapOnly(params)) => params,
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
    if let Some(result) = walk_response(bytes, request_id) {
        return Ok(result);
    }
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

/// A well-formed MessagePack request, read without serde's generic path; `None` for
/// anything else (JSON, a missing or mistyped field, an invalid timeout, params that are
/// not a `P`), which [`decode_request`] then decodes the general way.
fn walk_request<P: DeserializeOwned>(bytes: &[u8]) -> Option<IncomingRequest<P>> {
    if codec::Encoding::sniff(bytes)? != codec::Encoding::MessagePack {
        return None;
    }
    let mut walk = Walk::new(bytes);
    let (mut message_id, mut trace_id, mut source) = (None, None, None);
    let (mut method, mut params, mut timeout) = (None, None, None);
    let mut seen = 0u16;
    for _ in 0..walk.map_len()? {
        let key = walk.key()?;
        let (value, slice) = walk.value()?;
        let bit = match key {
            b"message_id" => 1,
            b"trace_id" => 2,
            b"correlation_id" => 4,
            b"timestamp" => 8,
            b"source" => 16,
            b"target" => 32,
            b"method" => 64,
            b"params" => 128,
            b"timeout" => 256,
            _ => 0,
        };
        // A repeated field is an error, worded by serde.
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match (bit, value) {
            (0, _) => {}
            (1 | 2 | 4 | 8 | 16 | 32, Scalar::Nil) => {}
            (1, Scalar::Str(s)) => message_id = Some(s),
            (2, Scalar::Str(s)) => trace_id = Some(s),
            (16, Scalar::Str(s)) => source = Some(s),
            (4 | 8 | 32, Scalar::Str(_)) => {}
            (64, Scalar::Str(s)) if !s.is_empty() => method = Some(s),
            // A nil `params` means the default: serde's path.
            (128, value) if !matches!(value, Scalar::Nil) => params = Some(slice),
            (256, Scalar::Number(n)) => timeout = Some(n),
            _ => return None,
        }
    }
    if !walk.is_done() {
        return None;
    }
    method?;
    let timeout = timeout.unwrap_or(RpcRequest::<P>::DEFAULT_TIMEOUT_SECS);
    if !(timeout.is_finite() && timeout > 0.0) {
        return None;
    }
    // Params are a map (serde alone would build a struct from an array too).
    let params = params?;
    Walk::new(params).map_len()?;
    let params: P = rmp_serde::from_slice(params).ok()?;
    Some(IncomingRequest {
        message_id: message_id.map_or_else(envelope::new_id, str::to_owned),
        trace_id: trace_id.map_or_else(envelope::new_id, str::to_owned),
        source: source.map(str::to_owned),
        params,
        timeout,
    })
}

/// The result of a well-formed MessagePack success reply to `request_id`, read without
/// serde's generic path; `None` for anything else (JSON, a failure, another request's
/// reply, a mistyped field, a result that is not an `R`), which [`decode_response`]
/// then decodes the general way.
fn walk_response<R: DeserializeOwned>(bytes: &[u8], request_id: &str) -> Option<R> {
    if codec::Encoding::sniff(bytes)? != codec::Encoding::MessagePack {
        return None;
    }
    let mut walk = Walk::new(bytes);
    let (mut success, mut result) = (None, None);
    let mut seen = 0u16;
    for _ in 0..walk.map_len()? {
        let key = walk.key()?;
        let (value, slice) = walk.value()?;
        let bit = match key {
            b"message_id" => 1,
            b"trace_id" => 2,
            b"correlation_id" => 4,
            b"timestamp" => 8,
            b"source" => 16,
            b"target" => 32,
            b"success" => 64,
            b"result" => 128,
            b"error" => 256,
            _ => 0,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match (bit, value) {
            (0, _) => {}
            (1 | 2 | 4 | 8 | 16 | 32 | 256, Scalar::Nil) => {}
            (4, Scalar::Str(correlation)) if correlation == request_id => {}
            (1 | 2 | 8 | 16 | 32 | 256, Scalar::Str(_)) => {}
            (64, Scalar::Bool(true)) => success = Some(()),
            // A nil result (a unit, or `None`): serde's path.
            (128, value) if !matches!(value, Scalar::Nil) => result = Some(slice),
            _ => return None,
        }
    }
    if !walk.is_done() {
        return None;
    }
    success?;
    rmp_serde::from_slice(result?).ok()
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

    /// The serde path alone, as it was before the walk.
    fn serde_request(bytes: &[u8]) -> Result<IncomingRequest<Value>> {
        RpcRequest::<Value>::decode(bytes).map(IncomingRequest::from)
    }

    #[test]
    fn walked_requests_agree_with_serde() {
        let own = {
            let mut r = RpcRequest::new("echo", json!({"message": "hi", "n": [1, 2.5, null]}));
            r.source = Some("caller-1".into());
            r.target = Some("svc".into());
            Encoding::MessagePack.encode(&r).unwrap()
        };
        let python_like = Encoding::MessagePack
            .encode(&json!({
                "timeout": 3, "params": {"a": {"b": "c"}}, "method": "m", "extra": [1, {"x": 2}],
                "message_id": "id-1", "trace_id": null, "source": null, "timestamp": "t",
            }))
            .unwrap();
        // Taken by the walk: the SDK's own requests and a Python-shaped one.
        for bytes in [&own, &python_like] {
            let walked = walk_request::<Value>(bytes).expect("walked");
            let slow = serde_request(bytes).unwrap();
            assert_eq!(walked.message_id, slow.message_id);
            assert_eq!(walked.source, slow.source);
            assert_eq!(walked.params, slow.params);
            assert_eq!(walked.timeout, slow.timeout);
            if slow.trace_id.len() == 36 && bytes == &own {
                assert_eq!(walked.trace_id, slow.trace_id);
            }
        }
        // Left to serde (and its errors): JSON, odd types, duplicates, bad timeouts.
        for value in [
            json!({"method": "m", "timeout": "5"}),
            json!({"method": "m", "timeout": 0}),
            json!({"method": "", "params": {}}),
            json!({"params": {}}),
            json!({"method": 5}),
            json!({"method": "m", "params": null}),
            json!({"method": "m", "message_id": 7}),
        ] {
            let bytes = Encoding::MessagePack.encode(&value).unwrap();
            assert!(walk_request::<Value>(&bytes).is_none(), "{value}");
            let walked_or_not = decode_request::<Value>(&bytes).map(|r| r.params);
            assert_eq!(
                walked_or_not.map_err(|e| e.kind()),
                serde_request(&bytes)
                    .map(|r| r.params)
                    .map_err(|e| e.kind()),
                "{value}"
            );
        }
        let json_bytes = Encoding::Json
            .encode(&json!({"method": "m", "params": {}}))
            .unwrap();
        assert!(walk_request::<Value>(&json_bytes).is_none());
        // Params that are not the handler's type: serde words the error.
        #[derive(Debug, serde::Deserialize)]
        struct Typed {
            #[allow(dead_code)]
            count: u32,
        }
        let bytes = Encoding::MessagePack
            .encode(&json!({"method": "m", "params": {"count": "x"}}))
            .unwrap();
        assert!(walk_request::<Typed>(&bytes).is_none());
        assert!(decode_request::<Typed>(&bytes).is_err());
        // Duplicated keys, which the encoder never makes: a hand-made map.
        let duplicated = [
            &[0x82u8][..],
            &[0xa6],
            b"method",
            &[0xa1, b'a'],
            &[0xa6],
            b"method",
            &[0xa1, b'b'],
        ]
        .concat();
        assert!(walk_request::<Value>(&duplicated).is_none());
    }

    #[test]
    fn walked_responses_agree_with_serde() {
        for result in [
            json!({"a": 1}),
            json!("text"),
            json!(42),
            json!([1, "x"]),
            json!(true),
        ] {
            let owned = RpcResponse::ok(Some("req-1".into()), Some("t".into()), result.clone());
            let bytes = Encoding::MessagePack.encode(&owned).unwrap();
            assert_eq!(
                walk_response::<Value>(&bytes, "req-1"),
                Some(result.clone())
            );
            assert!(walk_response::<Value>(&bytes, "other").is_none());
            assert_eq!(decode_response::<Value>(&bytes, "req-1").unwrap(), result);
            assert_eq!(
                decode_response::<Value>(&bytes, "other")
                    .unwrap_err()
                    .kind(),
                ErrorKind::Decode
            );
        }
        let failure: RpcResponse<()> = RpcResponse::failure(Some("r".into()), None, "TIMEOUT: x");
        let bytes = Encoding::MessagePack.encode(&failure).unwrap();
        assert!(walk_response::<Value>(&bytes, "r").is_none());
        assert_eq!(
            decode_response::<Value>(&bytes, "r").unwrap_err().kind(),
            ErrorKind::Timeout
        );
        // A nil result and a missing `success` go to serde.
        let nil = Encoding::MessagePack
            .encode(&json!({"success": true, "result": null}))
            .unwrap();
        assert!(walk_response::<Option<u8>>(&nil, "r").is_none());
        assert_eq!(decode_response::<Option<u8>>(&nil, "r").unwrap(), None);
        let missing = Encoding::MessagePack.encode(&json!({"result": 1})).unwrap();
        assert!(decode_response::<Value>(&missing, "r").is_err());
    }
}
