//! The headers of a KV write, as the NATS adapter sends them.
//!
//! nats-server counts a message's headers with its value against a bucket's
//! `max_value_size` (and async-nats against the connection's max payload), so a write
//! carrying a TTL or an expected revision fits fewer value bytes than a plain put. Both
//! adapters build their writes' headers here and check the same sum, so a write is
//! refused alike on a server and in memory.

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::ports::kv::KvOperation;
use crate::ports::Headers;

/// Header: the revision the key's last record must have (0: none).
pub(crate) const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// Header: the record's own TTL, as `{seconds}s`.
pub(crate) const MESSAGE_TTL: &str = "Nats-TTL";
/// Header: `DEL` or `PURGE` on a delete or purge marker.
pub(crate) const KV_OPERATION: &str = "KV-Operation";
/// Header: `sub` on a purge, which rolls the key's history up into its marker.
pub(crate) const ROLLUP: &str = "Nats-Rollup";

/// The headers of one write: a put (`Put`), a delete or a purge marker, with the
/// expected last revision of the key and the TTL in whole seconds, when given.
pub(crate) fn write_headers(
    operation: KvOperation,
    expected_revision: Option<u64>,
    ttl_seconds: Option<u64>,
) -> Headers {
    let mut headers = Headers::new();
    match operation {
        KvOperation::Delete => headers.insert(KV_OPERATION, "DEL"),
        KvOperation::Purge => {
            headers.insert(KV_OPERATION, "PURGE");
            headers.insert(ROLLUP, "sub");
        }
        KvOperation::Put | KvOperation::Expired => {}
    }
    if let Some(revision) = expected_revision {
        headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, revision.to_string());
    }
    if let Some(seconds) = ttl_seconds {
        headers.insert(MESSAGE_TTL, format!("{seconds}s"));
    }
    headers
}

/// Refuses a write to `key` whose value and headers together exceed `limit` bytes.
///
/// # Errors
/// [`ErrorKind::PayloadTooLarge`].
pub(crate) fn check_size(key: &str, headers: &Headers, value: &Bytes, limit: usize) -> Result<()> {
    let header_bytes = headers.wire_len();
    if header_bytes + value.len() <= limit {
        return Ok(());
    }
    let message = if header_bytes == 0 {
        format!(
            "write of key {key} failed: {} bytes exceed the limit of {limit}",
            value.len()
        )
    } else {
        format!(
            "write of key {key} failed: {} bytes of value and {header_bytes} of headers \
             exceed the limit of {limit}",
            value.len()
        )
    };
    Err(Error::new(ErrorKind::PayloadTooLarge, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_are_those_on_the_wire() {
        // "NATS/1.0\r\n" + "Name: value\r\n"... + "\r\n"
        let size = |op, rev, ttl| write_headers(op, rev, ttl).wire_len();
        assert_eq!(size(KvOperation::Put, None, None), 0);
        assert_eq!(size(KvOperation::Put, None, Some(5)), 26);
        assert_eq!(size(KvOperation::Put, Some(0), None), 52);
        assert_eq!(size(KvOperation::Put, Some(13), Some(5)), 67);
        assert_eq!(size(KvOperation::Delete, None, None), 31);
        assert_eq!(size(KvOperation::Purge, None, None), 51);
        assert!(check_size("k", &Headers::new(), &Bytes::from(vec![0; 64]), 64).is_ok());
        let err = check_size(
            "k",
            &write_headers(KvOperation::Put, Some(0), None),
            &Bytes::from(vec![0; 13]),
            64,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    }
}
