//! What a handler receives besides its parameters, and what it may fail with.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::application::client::Client;
use crate::domain::error_code;
use crate::domain::{InstanceId, ServiceName};
use crate::error::{Error, ErrorKind};
use crate::ports::Headers;

/// Facts about the service instance, shared by every request it handles.
#[derive(Debug)]
pub(crate) struct InstanceInfo {
    pub(crate) service: ServiceName,
    pub(crate) instance_id: InstanceId,
    pub(crate) version: String,
}

/// The context of one RPC request, handed to its handler.
#[derive(Clone)]
pub struct RpcContext {
    pub(crate) instance: Arc<InstanceInfo>,
    pub(crate) client: Client,
    pub(crate) method: Arc<str>,
    pub(crate) message_id: String,
    pub(crate) trace_id: String,
    pub(crate) source: Option<String>,
    pub(crate) deadline: Instant,
    pub(crate) headers: Headers,
    pub(crate) fencing_token: Option<u64>,
    /// The leadership the call was admitted under, for exclusive methods.
    pub(crate) leadership: Option<super::election::Leadership>,
}

impl fmt::Debug for RpcContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcContext")
            .field("service", &self.instance.service)
            .field("instance_id", &self.instance.instance_id)
            .field("method", &self.method)
            .field("message_id", &self.message_id)
            .field("trace_id", &self.trace_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl RpcContext {
    /// The service handling the request.
    pub fn service(&self) -> &ServiceName {
        &self.instance.service
    }

    /// The instance handling the request.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance.instance_id
    }

    /// The service's version.
    pub fn version(&self) -> &str {
        &self.instance.version
    }

    /// The method being called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request's message id (the reply's correlation id).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The trace the request belongs to.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The caller's instance id, if it sent one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// When the caller stops waiting; the handler is cancelled then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The request's headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// For exclusive methods of a single-active service: the fencing token of the
    /// leader's term, a number that grows with every term. Attach it to side effects so
    /// that stores can refuse writes of a deposed leader. `None` for other methods.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// For exclusive methods: whether this instance still leads, by its own clock, in
    /// the term the call was admitted in. A call outlives its term only when the leader
    /// stalled or lost its store (a frozen process, say, resumed after a standby took
    /// over); ask right before a side effect that must not happen outside the term.
    /// A leader that is stopping keeps its term until its running calls are done.
    /// `false` for other methods.
    pub fn still_leader(&self) -> bool {
        match (&self.leadership, self.fencing_token) {
            (Some(leadership), Some(token)) => leadership.fencing_token() == Some(token),
            _ => false,
        }
    }

    /// A client on the service's connection, naming this instance as `source`, for
    /// calls made while handling the request.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// A handler's failure, sent to the caller as the reply's `error` text.
///
/// Any `std::error::Error` converts into it with `?`; an SDK [`Error`] keeps its
/// meaning as a well-known code (`NOT_ACTIVE`, `INVALID_REQUEST`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    code: Option<String>,
    message: String,
}

impl HandlerError {
    /// A failure with a message and no code.
    pub fn msg(message: impl fmt::Display) -> Self {
        HandlerError {
            code: None,
            message: message.to_string(),
        }
    }

    /// A failure with a well-known `code` (see [`crate::domain::error_code`]).
    pub fn with_code(code: impl Into<String>, message: impl fmt::Display) -> Self {
        HandlerError {
            code: Some(code.into()),
            message: message.to_string(),
        }
    }

    /// `INVALID_REQUEST`: the parameters are wrong.
    pub fn invalid_request(message: impl fmt::Display) -> Self {
        Self::with_code(error_code::INVALID_REQUEST, message)
    }

    /// The code, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The message, without the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The reply's `error` text: `"{code}: {message}"`, or the message alone.
    pub fn to_wire(&self) -> String {
        match &self.code {
            Some(code) => error_code::with_code(code, &self.message),
            None if self.message.is_empty() => "handler failed".to_owned(),
            None => self.message.clone(),
        }
    }

    fn from_sdk_error(error: &Error) -> Self {
        let code = match error.kind() {
            ErrorKind::NotActive => Some(error_code::NOT_ACTIVE),
            ErrorKind::InvalidName | ErrorKind::InvalidArgument | ErrorKind::Decode => {
                Some(error_code::INVALID_REQUEST)
            }
            ErrorKind::Timeout => Some(error_code::TIMEOUT),
            ErrorKind::Closed => Some(error_code::SERVICE_UNAVAILABLE),
            ErrorKind::Remote => None,
            _ => Some(error_code::INTERNAL_ERROR),
        };
        match (code, error.remote_code()) {
            // A remote failure passes through as it came.
            (None, _) | (_, Some(_)) => HandlerError {
                code: None,
                message: error.message().to_owned(),
            },
            (Some(code), None) => HandlerError::with_code(code, error.message()),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        match (&error as &dyn Any).downcast_ref::<Error>() {
            Some(sdk) => HandlerError::from_sdk_error(sdk),
            None => HandlerError::msg(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_keeps_codes_first() {
        assert_eq!(HandlerError::msg("out of stock").to_wire(), "out of stock");
        assert_eq!(
            HandlerError::invalid_request("bad id").to_wire(),
            "INVALID_REQUEST: bad id"
        );
        let from_sdk: HandlerError = Error::new(ErrorKind::NotActive, "standby").into();
        assert_eq!(from_sdk.to_wire(), "NOT_ACTIVE: standby");
        let io: HandlerError = std::io::Error::other("disk").into();
        assert_eq!(io.to_wire(), "disk");
        let remote: HandlerError = Error::remote("TIMEOUT: downstream").into();
        assert_eq!(remote.to_wire(), "TIMEOUT: downstream");
    }
}
