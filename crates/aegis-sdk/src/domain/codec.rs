//! MessagePack and JSON encoding, with the first-byte sniffing of the wire contract.
//!
//! Senders pick an [`Encoding`] (MessagePack by default). Receivers never need to know
//! which one was used: [`decode`] looks at the first byte, so a MessagePack client can
//! talk to a JSON service and the reverse.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// How envelopes are encoded on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// MessagePack maps with string keys (the default, as in the Python SDK).
    #[default]
    MessagePack,
    /// UTF-8 JSON.
    Json,
}

impl Encoding {
    /// Encodes `value` as a map-shaped message.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) when serde refuses the value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        // Envelopes are a few hundred bytes: start there rather than grow from nothing.
        let mut buffer = Vec::with_capacity(256);
        match self {
            Encoding::MessagePack => rmp_serde::encode::write_named(&mut buffer, value)
                .map_err(|e| Error::encode(format!("MessagePack: {e}")).with_source(e))?,
            Encoding::Json => serde_json::to_writer(&mut buffer, value)
                .map_err(|e| Error::encode(format!("JSON: {e}")).with_source(e))?,
        }
        Ok(buffer)
    }

    /// The encoding a received message uses, judged by its first byte: `0x80..=0x8F`,
    /// `0x90..=0x9F` or `0xC0..=0xDF` mean MessagePack, anything else JSON. `None` for an
    /// empty payload.
    pub fn sniff(bytes: &[u8]) -> Option<Encoding> {
        let first = *bytes.first()?;
        Some(match first {
            0x80..=0x8F | 0x90..=0x9F | 0xC0..=0xDF => Encoding::MessagePack,
            _ => Encoding::Json,
        })
    }
}

/// The error for `bytes` that did not decode as JSON: bytes that cannot begin any JSON
/// text (nor a MessagePack map or array) are said to be neither.
fn json_error(bytes: &[u8], error: serde_json::Error) -> Error {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let message = match first {
        Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') | None => {
            format!("invalid JSON message: {error}")
        }
        Some(byte) => {
            format!("neither a MessagePack nor a JSON message (it begins with byte 0x{byte:02x})")
        }
    };
    Error::decode(message).with_source(error)
}

/// Decodes a received message into `T`, sniffing its encoding.
///
/// # Errors
/// [`ErrorKind::Decode`](crate::ErrorKind::Decode) for an empty payload or bytes that do
/// not form a `T`; the message says what was wrong.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match Encoding::sniff(bytes) {
        None => Err(Error::decode("empty payload")),
        Some(Encoding::MessagePack) => rmp_serde::from_slice(bytes)
            .map_err(|e| Error::decode(format!("invalid MessagePack message: {e}")).with_source(e)),
        Some(Encoding::Json) => serde_json::from_slice(bytes).map_err(|e| json_error(bytes, e)),
    }
}

/// Like [`decode`], for types that borrow strings from `bytes` instead of copying them.
///
/// # Errors
/// As [`decode`].
pub fn decode_borrowed<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    match Encoding::sniff(bytes) {
        None => Err(Error::decode("empty payload")),
        Some(Encoding::MessagePack) => rmp_serde::from_slice(bytes)
            .map_err(|e| Error::decode(format!("invalid MessagePack message: {e}")).with_source(e)),
        Some(Encoding::Json) => serde_json::from_slice(bytes).map_err(|e| json_error(bytes, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::{json, Value};

    #[test]
    fn garbage_is_called_neither_encoding() {
        for bytes in [&b"\xff\xfe\x00garbage"[..], &[0x2a], b"hello"] {
            let err = decode::<Value>(bytes).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode);
            assert!(
                err.message()
                    .starts_with("neither a MessagePack nor a JSON"),
                "{err}"
            );
        }
        let err = decode::<Value>(b"{\"a\": ").unwrap_err();
        assert!(err.message().starts_with("invalid JSON message"), "{err}");
    }

    #[test]
    fn round_trips_both_encodings() {
        let value = json!({"a": 1, "b": [true, null, "x"], "c": {"d": 1.5}});
        for encoding in [Encoding::MessagePack, Encoding::Json] {
            let bytes = encoding.encode(&value).unwrap();
            assert_eq!(Encoding::sniff(&bytes), Some(encoding));
            let back: Value = decode(&bytes).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn msgpack_strings_are_str_not_bin() {
        let bytes = Encoding::MessagePack.encode(&json!({"k": "v"})).unwrap();
        // fixmap(1), fixstr "k", fixstr "v"
        assert_eq!(bytes, vec![0x81, 0xa1, b'k', 0xa1, b'v']);
    }

    #[test]
    fn bad_input_is_a_decode_error() {
        for bytes in [&b""[..], b"\xc1garbage", b"not json", b"{\"a\":", b"\x81"] {
            let err = decode::<Value>(bytes).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{bytes:?}");
        }
    }
}
