//! The one error type of the SDK.
//!
//! Every fallible call returns [`Error`]. Callers match on [`Error::kind`] to decide what
//! to do (retry on [`ErrorKind::NoResponders`], give up on [`ErrorKind::InvalidName`], ...);
//! the message is for people. Errors from the NATS client are mapped at the adapter
//! boundary and kept only as the [`std::error::Error::source`] chain, so no async-nats type
//! appears in this crate's public API.

use std::fmt;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, as something a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The deadline passed before an answer arrived.
    Timeout,
    /// Nobody listens on the subject: the server said so at once.
    NoResponders,
    /// The remote handler failed; see [`Error::remote_code`] and the message.
    Remote,
    /// A service, method, event or key name breaks the naming rules.
    InvalidName,
    /// An argument is out of range or inconsistent (a zero timeout, say).
    InvalidArgument,
    /// A value could not be encoded.
    Encode,
    /// Bytes could not be decoded into the expected envelope or type.
    Decode,
    /// The encoded message is larger than the server accepts.
    PayloadTooLarge,
    /// Connecting to NATS failed, or the connection is unusable.
    Connection,
    /// The instance is not the active one of a single-active group.
    NotActive,
    /// A key or entity does not exist.
    NotFound,
    /// A key or entity exists already.
    AlreadyExists,
    /// A compare-and-set saw another revision than expected.
    RevisionMismatch,
    /// The work was cancelled.
    Cancelled,
    /// The service or component was stopped, or is not running.
    Closed,
    /// The instance running a call went away before it answered: the call may have
    /// run, in part or in full, and is not sent again. Only exclusive calls, whose
    /// leader confirms it took them, can tell this from a call that was lost unseen.
    Interrupted,
    /// A JetStream or KV operation failed on the server side.
    Storage,
    /// Something inside the SDK failed unexpectedly.
    Internal,
}

impl ErrorKind {
    /// A short, stable name for the kind, as used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::NoResponders => "no_responders",
            ErrorKind::Remote => "remote",
            ErrorKind::InvalidName => "invalid_name",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Encode => "encode",
            ErrorKind::Decode => "decode",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Connection => "connection",
            ErrorKind::NotActive => "not_active",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::RevisionMismatch => "revision_mismatch",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Closed => "closed",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Storage => "storage",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SDK error: a [`kind`](Error::kind), a message, and the cause if there is one.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    remote_code: Option<String>,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            remote_code: None,
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A failure reported by a remote handler. `text` is the reply's `error` string; a
    /// leading well-known code (`NOT_ACTIVE: ...`) is kept as [`Error::remote_code`].
    pub fn remote(text: impl Into<String>) -> Self {
        let text = text.into();
        let code = crate::domain::error_code::leading_code(&text).map(str::to_owned);
        let kind = match code.as_deref() {
            Some(crate::domain::error_code::NOT_ACTIVE) => ErrorKind::NotActive,
            // The service gave up at the caller's deadline: to the caller, a timeout.
            Some(crate::domain::error_code::TIMEOUT) => ErrorKind::Timeout,
            _ => ErrorKind::Remote,
        };
        Error {
            kind,
            message: text,
            remote_code: code,
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix that `Display` adds.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For remote failures: the well-known code the remote error started with
    /// (`NOT_ACTIVE`, `INVALID_REQUEST`, `INTERNAL_ERROR`, ...), if any.
    pub fn remote_code(&self) -> Option<&str> {
        self.remote_code.as_deref()
    }

    /// True for failures that a retry may cure: timeouts, missing responders, a standby
    /// answering, a broken connection.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Timeout
                | ErrorKind::NoResponders
                | ErrorKind::NotActive
                | ErrorKind::Connection
        )
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Decode, message)
    }

    pub(crate) fn encode(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Encode, message)
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn connection(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Connection, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_error_keeps_code_and_message() {
        let err = Error::remote("NOT_ACTIVE: instance a-1 is standby for group default");
        assert_eq!(err.kind(), ErrorKind::NotActive);
        assert_eq!(err.remote_code(), Some("NOT_ACTIVE"));
        assert!(err.message().contains("standby"));

        let err = Error::remote("TIMEOUT: handler did not finish within 1s");
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.remote_code(), Some("TIMEOUT"));

        let err = Error::remote("boom");
        assert_eq!(err.kind(), ErrorKind::Remote);
        assert_eq!(err.remote_code(), None);
        assert_eq!(err.message(), "boom");
    }

    #[test]
    fn transient_kinds() {
        assert!(Error::new(ErrorKind::Timeout, "t").is_transient());
        assert!(!Error::decode("d").is_transient());
    }
}
