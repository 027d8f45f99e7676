//! A reader for the top level of a MessagePack envelope: its keys, its string, number
//! and boolean values, and the bytes of any other value (params, result) to hand to
//! serde. RPC envelopes are decoded on every call; walking them directly skips serde's
//! generic machinery for the eight or so fields around the payload.
//!
//! It only ever answers `None` for what it does not expect: the callers then take the
//! general serde path, which decides what the message means and words the error.

/// A position in a MessagePack message.
pub(super) struct Walk<'a> {
    rest: &'a [u8],
}

/// A top-level value, as far as envelopes need to know it.
pub(super) enum Scalar<'a> {
    Nil,
    Bool(bool),
    Str(&'a str),
    Number(f64),
    /// Any other value (a map, an array, binary data).
    Other,
}

/// How deep a skipped value may nest before the walk gives up (serde's path decides).
const MAX_DEPTH: usize = 64;

impl<'a> Walk<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Walk { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    }

    /// The number of entries of the map that starts here.
    pub(super) fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => self.be(2).map(|n| n as usize),
            0xdf => self.be(4).map(|n| n as usize),
            _ => None,
        }
    }

    /// A string key or value, as bytes.
    fn str_bytes(&mut self, marker: u8) -> Option<&'a [u8]> {
        let len = match marker {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return None,
        };
        self.take(len)
    }

    /// A map key: a string, compared as bytes.
    pub(super) fn key(&mut self) -> Option<&'a [u8]> {
        let marker = self.byte()?;
        self.str_bytes(marker)
    }

    /// The next value, and its encoded bytes.
    pub(super) fn value(&mut self) -> Option<(Scalar<'a>, &'a [u8])> {
        let start = self.rest;
        let marker = *self.rest.first()?;
        let scalar = match marker {
            0xc0 => {
                self.take(1)?;
                Scalar::Nil
            }
            0xc2 | 0xc3 => {
                self.take(1)?;
                Scalar::Bool(marker == 0xc3)
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.take(1)?;
                Scalar::Str(std::str::from_utf8(self.str_bytes(marker)?).ok()?)
            }
            0x00..=0x7f => {
                self.take(1)?;
                Scalar::Number(f64::from(marker))
            }
            0xe0..=0xff => {
                self.take(1)?;
                Scalar::Number(f64::from(marker as i8))
            }
            0xca => {
                self.take(1)?;
                Scalar::Number(f64::from(f32::from_bits(self.be(4)? as u32)))
            }
            0xcb => {
                self.take(1)?;
                Scalar::Number(f64::from_bits(self.be(8)?))
            }
            0xcc..=0xcf => {
                self.take(1)?;
                Scalar::Number(self.be(1 << (marker - 0xcc))? as f64)
            }
            0xd0..=0xd3 => {
                self.take(1)?;
                let width = 1usize << (marker - 0xd0);
                let raw = self.be(width)?;
                let shift = 64 - 8 * width as u32;
                Scalar::Number((((raw << shift) as i64) >> shift) as f64)
            }
            _ => {
                self.skip(MAX_DEPTH)?;
                Scalar::Other
            }
        };
        let used = start.len() - self.rest.len();
        Some((scalar, &start[..used]))
    }

    /// Steps over one value of any kind.
    fn skip(&mut self, depth: usize) -> Option<()> {
        let depth = depth.checked_sub(1)?;
        let marker = self.byte()?;
        let (items, bytes) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            m @ 0x80..=0x8f => (2 * usize::from(m & 0x0f), 0),
            m @ 0x90..=0x9f => (usize::from(m & 0x0f), 0),
            m @ 0xa0..=0xbf => (0, usize::from(m & 0x1f)),
            0xc4 | 0xd9 => (0, self.be(1)? as usize),
            0xc5 | 0xda => (0, self.be(2)? as usize),
            0xc6 | 0xdb => (0, self.be(4)? as usize),
            0xc7 => (0, self.be(1)? as usize + 1),
            0xc8 => (0, self.be(2)? as usize + 1),
            0xc9 => (0, self.be(4)? as usize + 1),
            0xca => (0, 4),
            0xcb => (0, 8),
            0xcc..=0xcf => (0, 1usize << (marker - 0xcc)),
            0xd0..=0xd3 => (0, 1usize << (marker - 0xd0)),
            0xd4..=0xd8 => (0, 1 + (1usize << (marker - 0xd4))),
            0xdc => (self.be(2)? as usize, 0),
            0xdd => (self.be(4)? as usize, 0),
            0xde => (2 * self.be(2)? as usize, 0),
            0xdf => (2 * self.be(4)? as usize, 0),
            // 0xc1 is never used.
            _ => return None,
        };
        self.take(bytes)?;
        for _ in 0..items {
            self.skip(depth)?;
        }
        Some(())
    }

    /// Whether the whole message was read.
    pub(super) fn is_done(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(value: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec(value).unwrap()
    }

    #[test]
    fn reads_scalars_and_slices_out_the_rest() {
        let value = json!({
            "s": "hé", "n": null, "t": true, "f": false, "i": 7, "neg": -3, "big": 70000,
            "x": 1.5, "m": {"a": [1, 2, {"b": "c"}]}, "l": "x".repeat(300)
        });
        let bytes = encode(&value);
        let mut walk = Walk::new(&bytes);
        let len = walk.map_len().unwrap();
        assert_eq!(len, 10);
        let mut seen = Vec::new();
        for _ in 0..len {
            let key = std::str::from_utf8(walk.key().unwrap()).unwrap().to_owned();
            let (scalar, slice) = walk.value().unwrap();
            let whole: serde_json::Value = rmp_serde::from_slice(slice).unwrap();
            let got = match scalar {
                Scalar::Nil => json!(null),
                Scalar::Bool(b) => json!(b),
                Scalar::Str(s) => json!(s),
                Scalar::Number(n) => json!(n),
                Scalar::Other => whole.clone(),
            };
            if !matches!(scalar, Scalar::Number(_)) {
                assert_eq!(got, whole, "{key}");
            }
            seen.push((key, got));
        }
        assert!(walk.is_done());
        for (key, got) in seen {
            let want = &value[&key];
            match want.as_f64() {
                Some(n) => assert_eq!(got.as_f64(), Some(n), "{key}"),
                None => assert_eq!(&got, want, "{key}"),
            }
        }
    }

    #[test]
    fn truncated_or_odd_input_is_none_not_a_panic() {
        let bytes = encode(&json!({"a": {"b": [1, 2, 3]}, "c": "dddd"}));
        for cut in 0..bytes.len() {
            let mut walk = Walk::new(&bytes[..cut]);
            let Some(len) = walk.map_len() else { continue };
            for _ in 0..len {
                if walk.key().is_none() || walk.value().is_none() {
                    break;
                }
            }
        }
        assert!(Walk::new(&[0xc1]).value().is_none());
        assert!(Walk::new(&[0x91]).map_len().is_none());
        // Nesting past the limit gives up.
        let deep = [0x91u8; 200];
        assert!(Walk::new(&deep).value().is_none());
    }
}
