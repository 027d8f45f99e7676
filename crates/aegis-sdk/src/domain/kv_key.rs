//! KV keys and bucket names: the NATS key alphabet, and a reversible encoding of
//! arbitrary strings into it.
//!
//! A key is one or more tokens of `[-/_=a-zA-Z0-9]` separated by single dots: it may not
//! be empty, start or end with a dot, or hold two dots in a row. Anything else (spaces,
//! `:`, `*`, `>`, non-ASCII) is refused with
//! [`ErrorKind::InvalidName`] before it reaches the wire.
//! [`encode_key`] maps any non-empty string to a valid key (`user:123` becomes
//! `user=3A123`) and [`decode_key`] maps it back.

use crate::domain::names::excerpt;
use crate::error::{Error, ErrorKind, Result};

/// The longest key, in bytes. A key travels in the subject `$KV.{bucket}.{key}` of a
/// NATS control line (at most 4096 bytes by default), so a much longer one could never
/// be read or written; it is refused at once instead of timing out.
pub const KEY_MAX: usize = 1024;

/// The longest bucket name, in bytes (its stream, `KV_{bucket}`, is a folder name on
/// the server).
pub const BUCKET_MAX: usize = 200;

fn invalid(what: &str, value: &str, rule: &str) -> Error {
    Error::new(
        ErrorKind::InvalidName,
        format!("invalid {what} {}: {rule}", excerpt(value)),
    )
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=')
}

/// Checks that `key` is a valid KV key.
///
/// # Errors
/// [`ErrorKind::InvalidName`] when it is empty, longer than [`KEY_MAX`] bytes, holds a
/// character outside `[-/_=.a-zA-Z0-9]`, or has an empty token (leading, trailing or
/// doubled dot).
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("key", key, "must not be empty"));
    }
    if key.len() > KEY_MAX {
        return Err(invalid(
            "key",
            key,
            &format!("must be at most {KEY_MAX} bytes"),
        ));
    }
    if let Some(c) = key.chars().find(|&c| !is_key_char(c) && c != '.') {
        return Err(invalid(
            "key",
            key,
            &format!("character {c:?} is not allowed; use encode_key for arbitrary strings"),
        ));
    }
    if key.split('.').any(str::is_empty) {
        return Err(invalid(
            "key",
            key,
            "must not start or end with '.' or contain '..'",
        ));
    }
    Ok(())
}

/// Checks a key prefix: empty (everything), or the start of a valid key (it may end with
/// a dot, as in `orders.`).
///
/// # Errors
/// [`ErrorKind::InvalidName`] when the prefix could not start any valid key.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('.').unwrap_or(prefix))
        .map_err(|e| invalid("key prefix", prefix, e.message()))
}

/// Checks a bucket name: `[a-zA-Z0-9_-]+`, at most [`BUCKET_MAX`] bytes.
///
/// # Errors
/// [`ErrorKind::InvalidName`] otherwise.
pub fn validate_bucket(bucket: &str) -> Result<()> {
    if bucket.is_empty() {
        return Err(invalid("bucket", bucket, "must not be empty"));
    }
    if bucket.len() > BUCKET_MAX {
        return Err(invalid(
            "bucket",
            bucket,
            &format!("must be at most {BUCKET_MAX} bytes"),
        ));
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            "bucket",
            bucket,
            "must contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// Encodes any non-empty string as a valid key: letters, digits, `-`, `_` and `/` stay,
/// every other byte (including `.` and `=`) becomes `=XX` with two upper-case hex digits.
///
/// # Errors
/// [`ErrorKind::InvalidName`] for an empty string.
///
/// # Examples
/// ```
/// use aegis_sdk::domain::kv_key::{decode_key, encode_key};
/// let key = encode_key("user:123").unwrap();
/// assert_eq!(key, "user=3A123");
/// assert_eq!(decode_key(&key).unwrap(), "user:123");
/// ```
pub fn encode_key(raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Err(invalid("key", raw, "must not be empty"));
    }
    let mut key = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        let c = byte as char;
        if byte.is_ascii() && is_key_char(c) && c != '=' {
            key.push(c);
        } else {
            key.push_str(&format!("={byte:02X}"));
        }
    }
    Ok(key)
}

/// Reverses [`encode_key`].
///
/// # Errors
/// [`ErrorKind::InvalidName`] when `key` is not something [`encode_key`] produces (an
/// invalid key, a broken `=XX` escape, or bytes that are not UTF-8).
pub fn decode_key(key: &str) -> Result<String> {
    validate_key(key)?;
    let bytes = key.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = key
                .get(i + 1..i + 3)
                .ok_or_else(|| invalid("encoded key", key, "truncated '=' escape"))?;
            let byte = u8::from_str_radix(hex, 16)
                .map_err(|_| invalid("encoded key", key, "bad '=' escape"))?;
            raw.push(byte);
            i += 3;
        } else {
            raw.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(raw).map_err(|_| invalid("encoded key", key, "does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_keys() {
        for key in [
            "a",
            "orders.42",
            "a-b_c/d=e",
            "service-instances__svc__svc-1",
        ] {
            validate_key(key).unwrap();
        }
        for key in [
            "", ".a", "a.", "a..b", "a b", "user:1", "a*", "a>", "é", "a\n",
        ] {
            assert_eq!(
                validate_key(key).unwrap_err().kind(),
                ErrorKind::InvalidName,
                "{key:?}"
            );
        }
    }

    #[test]
    fn long_keys_and_buckets_are_refused_without_echoing_them() {
        validate_key(&"k".repeat(KEY_MAX)).unwrap();
        let long = "k".repeat(100_000);
        for error in [
            validate_key(&long).unwrap_err(),
            validate_key(&"k".repeat(KEY_MAX + 1)).unwrap_err(),
            validate_prefix(&long).unwrap_err(),
            validate_bucket(&long).unwrap_err(),
        ] {
            assert_eq!(error.kind(), ErrorKind::InvalidName);
            assert!(error.message().len() < 300, "{}", error.message());
            assert!(error.message().contains("at most"), "{}", error.message());
        }
        validate_bucket(&"b".repeat(BUCKET_MAX)).unwrap();
        assert!(validate_bucket(&"b".repeat(BUCKET_MAX + 1)).is_err());
    }

    #[test]
    fn prefixes_and_buckets() {
        validate_prefix("").unwrap();
        validate_prefix("orders.").unwrap();
        validate_prefix("service-instances__svc__").unwrap();
        assert!(validate_prefix("a b").is_err());
        validate_bucket("service_registry").unwrap();
        assert!(validate_bucket("a.b").is_err());
        assert!(validate_bucket("").is_err());
    }

    #[test]
    fn encoding_round_trips() {
        for raw in [
            "user:123",
            "a.b",
            "=",
            "héllo wörld",
            "x*>y",
            ".",
            "plain_key-1/2",
        ] {
            let key = encode_key(raw).unwrap();
            validate_key(&key).unwrap();
            assert_eq!(decode_key(&key).unwrap(), raw);
        }
        assert_eq!(encode_key("plain").unwrap(), "plain");
        assert_eq!(encode_key("").unwrap_err().kind(), ErrorKind::InvalidName);
        assert_eq!(
            decode_key("a=4").unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            decode_key("a=ZZ").unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            decode_key("=FF").unwrap_err().kind(),
            ErrorKind::InvalidName
        );
    }
}
