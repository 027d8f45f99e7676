//! Typed RPC handlers behind one object-safe trait, so a service can hold handlers of
//! different parameter and result types in one table.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::context::{HandlerError, RpcContext};
use crate::domain::envelope::{self, RpcResponse};
use crate::domain::hot::{self, ResponseRef};
use crate::domain::{error_code, Encoding};

/// What the dispatcher hands a handler: the raw request and a context template.
pub(crate) struct Incoming {
    pub(crate) payload: bytes::Bytes,
    pub(crate) context: RpcContext,
    /// Whether the request waited for a free slot (the service was at its concurrency
    /// limit): its caller's deadline may have passed meanwhile.
    pub(crate) waited: bool,
}

/// A reply ready to send, and whether it reports a failure (with its text).
pub(crate) struct Outgoing {
    pub(crate) payload: Vec<u8>,
    pub(crate) failed: bool,
    pub(crate) error: Option<String>,
}

/// An RPC handler with its types erased.
pub(crate) trait RpcHandler: Send + Sync + 'static {
    fn call(&self, incoming: Incoming, encoding: Encoding) -> BoxFuture<'static, Outgoing>;
}

/// Builds the failure reply to a request, best effort on its ids.
pub(crate) fn failure_reply(
    encoding: Encoding,
    request_id: Option<String>,
    trace_id: Option<String>,
    error: String,
) -> Outgoing {
    let response: RpcResponse<()> = RpcResponse::failure(request_id, trace_id, error);
    match encoding.encode(&response) {
        Ok(payload) => Outgoing {
            payload,
            failed: true,
            error: response.error,
        },
        // A failure envelope of strings always encodes; keep a readable fallback anyway.
        Err(e) => Outgoing {
            payload: format!(
                "{{\"success\":false,\"result\":null,\"error\":\"{}\"}}",
                e.kind()
            )
            .into_bytes(),
            failed: true,
            error: response.error,
        },
    }
}

/// The reply for a request that could not be decoded.
pub(crate) fn invalid_request_reply(
    encoding: Encoding,
    payload: &[u8],
    error: &crate::Error,
) -> Outgoing {
    let (request_id, trace_id) = envelope::peek_ids(payload).unwrap_or((None, None));
    failure_reply(
        encoding,
        request_id,
        trace_id,
        error_code::with_code(error_code::INVALID_REQUEST, error.message()),
    )
}

/// The text a panic carried, for failure replies and logs.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

/// A handler written as an async function of (context, params).
pub(crate) struct TypedHandler<F, P, R> {
    function: F,
    _types: PhantomData<fn(P) -> R>,
}

impl<F, P, R> TypedHandler<F, P, R> {
    pub(crate) fn new(function: F) -> Self {
        TypedHandler {
            function,
            _types: PhantomData,
        }
    }
}

impl<F, Fut, P, R> RpcHandler for TypedHandler<F, P, R>
where
    F: Fn(RpcContext, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call(&self, incoming: Incoming, encoding: Encoding) -> BoxFuture<'static, Outgoing> {
        let Incoming {
            payload,
            mut context,
            waited,
        } = incoming;

        let request = match hot::decode_request::<P>(&payload) {
            Ok(request) => request,
            Err(error) => {
                return futures::future::ready(invalid_request_reply(encoding, &payload, &error))
                    .boxed()
            }
        };
        // Untyped handlers still get the contract's guarantee that params are a map.
        if let Some(value) = (&request.params as &dyn Any).downcast_ref::<serde_json::Value>() {
            if !value.is_object() {
                let error = crate::Error::decode("`params` must be a map");
                return futures::future::ready(invalid_request_reply(encoding, &payload, &error))
                    .boxed();
            }
        }

        context.message_id = request.message_id;
        context.trace_id = super::propagation::agreeing_trace_id(request.trace_id);
        context.source = request.source;
        let instance = context.instance.clone();
        let ids = (context.message_id.clone(), context.trace_id.clone());
        let mut budget = std::time::Duration::from_secs_f64(request.timeout.min(1.0e9));
        // The dispatcher left the time of arrival in `deadline`.
        context.deadline += budget;
        if waited {
            // What is left of the caller's wait; none left, and running would be wasted
            // work (and side effects its caller was told did not happen in time).
            budget = context
                .deadline
                .saturating_duration_since(std::time::Instant::now());
            if budget.is_zero() {
                let text = "the caller's deadline passed while the call waited for a free \
                            slot (the service is at its concurrency limit)";
                return futures::future::ready(failure_reply(
                    encoding,
                    Some(ids.0),
                    Some(ids.1),
                    error_code::with_code(error_code::TIMEOUT, text),
                ))
                .boxed();
            }
        }

        // Calling the function may itself panic before it returns a future.
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            (self.function)(context, request.params)
        })) {
            Ok(future) => future,
            Err(panic) => {
                let text = format!("handler panicked: {}", panic_message(&*panic));
                return futures::future::ready(failure_reply(
                    encoding,
                    Some(ids.0),
                    Some(ids.1),
                    error_code::with_code(error_code::INTERNAL_ERROR, text),
                ))
                .boxed();
            }
        };

        async move {
            let (request_id, trace_id) = ids;
            // The caller stops waiting after its timeout: running on is wasted work.
            let outcome =
                tokio::time::timeout(budget, AssertUnwindSafe(future).catch_unwind()).await;
            let error = match outcome {
                Ok(Ok(Ok(result))) => {
                    let message_id = envelope::new_id();
                    let timestamp = envelope::now_timestamp();
                    let response = ResponseRef {
                        message_id: &message_id,
                        trace_id: &trace_id,
                        correlation_id: Some(&request_id),
                        timestamp: &timestamp,
                        source: Some(instance.instance_id.as_str()),
                        target: None,
                        success: true,
                        result: Some(&result),
                        error: None,
                    };
                    match encoding.encode(&response) {
                        Ok(payload) => {
                            return Outgoing {
                                payload,
                                failed: false,
                                error: None,
                            }
                        }
                        Err(e) => error_code::with_code(
                            error_code::INTERNAL_ERROR,
                            format!("cannot encode result: {}", e.message()),
                        ),
                    }
                }
                Ok(Ok(Err(handler_error))) => handler_error.to_wire(),
                Ok(Err(panic)) => error_code::with_code(
                    error_code::INTERNAL_ERROR,
                    format!("handler panicked: {}", panic_message(&*panic)),
                ),
                Err(_) => error_code::with_code(
                    error_code::TIMEOUT,
                    format!("handler did not finish within {budget:?}"),
                ),
            };
            failure_reply(encoding, Some(request_id), Some(trace_id), error)
        }
        .boxed()
    }
}
