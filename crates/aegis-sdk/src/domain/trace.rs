//! W3C trace context, and how it maps onto the envelopes' `trace_id`.
//!
//! A trace travels in the `traceparent` NATS header of every RPC request, event and
//! command, as the [W3C Trace Context] specifies: `00-{trace id}-{parent id}-{flags}`,
//! with a 32-hex-digit trace id and a 16-hex-digit parent (span) id.
//!
//! The envelopes of the wire contract carry a `trace_id` too, as a UUID string, which is
//! what Python peers read and write. Both name the same 16 bytes:
//!
//! - **W3C to envelope**: the 32 hex digits, lowercase, grouped 8-4-4-4-12 with hyphens.
//!   Trace `4bf92f3577b34da6a3ce929d0e0e4736` is envelope `trace_id`
//!   `4bf92f35-77b3-4da6-a3ce-929d0e0e4736`.
//! - **Envelope to W3C**: the hyphens removed, lowercased. A `trace_id` that is not 32 hex
//!   digits (with or without the hyphens), or is all zeros, names no W3C trace; a
//!   receiver then starts a new one.
//!
//! Traces started by this SDK use a random UUID v4 as their id, so the envelope form is a
//! valid UUID v4 as the contract asks. A trace started elsewhere (by an OpenTelemetry
//! tracer, say) keeps its id; its envelope form is then a UUID in shape, whatever its
//! version digit.
//!
//! A message that carries both and where they disagree (only a foreign sender can do
//! that) is read by the header: it is the standard one.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/

use std::fmt;

/// The header carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A position in a trace: the trace, and the span the next hop descends from.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// The `sampled` flag of the W3C trace flags.
    const SAMPLED: u8 = 0x01;

    /// A new trace, with a random UUID v4 as its id and a new span.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: *uuid::Uuid::new_v4().as_bytes(),
            span_id: new_span_id(),
            flags: Self::SAMPLED,
        }
    }

    /// A trace context from its parts; `None` when either id is all zeros (invalid in
    /// W3C).
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            flags: if sampled { Self::SAMPLED } else { 0 },
        })
    }

    /// The next hop in the same trace: same trace id and flags, a new span id.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// A context in the trace named by an envelope `trace_id` (see the module docs),
    /// with a new span; `None` when the text names no trace.
    pub fn from_envelope_trace_id(trace_id: &str) -> Option<Self> {
        let bytes = parse_envelope_trace_id(trace_id)?;
        Some(TraceContext {
            trace_id: bytes,
            span_id: new_span_id(),
            flags: Self::SAMPLED,
        })
    }

    /// Parses a `traceparent` header value; `None` when it is malformed. Versions above
    /// `00` are read as the spec asks: the first four fields, anything after ignored.
    pub fn parse_traceparent(value: &str) -> Option<Self> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 || (bytes.len() > 55 && bytes[55] != b'-') {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(&bytes[3..35], &mut trace_id)?;
        let mut span_id = [0u8; 8];
        hex_into(&bytes[36..52], &mut span_id)?;
        let flags = hex_byte(&bytes[53..55])?;
        let context = Self::from_parts(trace_id, span_id, false)?;
        Some(TraceContext { flags, ..context })
    }

    /// The `traceparent` header value: `00-{trace id}-{span id}-{flags}`.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }

    /// The trace id's 16 bytes.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span id's 8 bytes.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits (the W3C form).
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }

    /// The trace id as an envelope `trace_id`: the UUID form (see the module docs).
    pub fn envelope_trace_id(&self) -> String {
        let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::from_bytes(self.trace_id)
            .hyphenated()
            .encode_lower(&mut buffer)
            .to_owned()
    }

    /// Whether an envelope `trace_id` names this context's trace.
    pub fn matches_envelope_trace_id(&self, trace_id: &str) -> bool {
        parse_envelope_trace_id(trace_id) == Some(self.trace_id)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// The 16 bytes an envelope `trace_id` names: 32 hex digits, hyphens anywhere ignored;
/// `None` for anything else and for all zeros.
pub fn parse_envelope_trace_id(trace_id: &str) -> Option<[u8; 16]> {
    let mut digits = [0u8; 32];
    let mut n = 0;
    for byte in trace_id.bytes() {
        if byte == b'-' {
            continue;
        }
        if n == 32 {
            return None;
        }
        digits[n] = byte;
        n += 1;
    }
    if n != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    hex_into(&digits, &mut out)?;
    (out != [0; 16]).then_some(out)
}

fn new_span_id() -> [u8; 8] {
    // A UUID v4 is 122 random bits from a fast generator; any 8 of its bytes do, and
    // the first 6 are all random.
    let random = uuid::Uuid::new_v4();
    let bytes = random.as_bytes();
    let mut span = [0u8; 8];
    span[..6].copy_from_slice(&bytes[..6]);
    span[6..].copy_from_slice(&bytes[10..12]);
    if span == [0; 8] {
        span[7] = 1;
    }
    span
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?)
}

fn hex_into(digits: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_spec_example() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse_traceparent(header).unwrap();
        assert_eq!(context.traceparent(), header);
        assert!(context.is_sampled());
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            context.envelope_trace_id(),
            "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
        );
        assert!(context.matches_envelope_trace_id("4bf92f35-77b3-4da6-a3ce-929d0e0e4736"));
        assert!(context.matches_envelope_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736"));

        let child = context.child();
        assert_eq!(child.trace_id(), context.trace_id());
        assert_ne!(child.span_id(), context.span_id());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse_traceparent(bad).is_none(), "{bad}");
        }
        // A later version may add fields after a dash.
        assert!(TraceContext::parse_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )
        .is_some());
    }

    #[test]
    fn new_roots_are_uuid_v4_in_the_envelope() {
        let root = TraceContext::new_root();
        let envelope = root.envelope_trace_id();
        let uuid = uuid::Uuid::parse_str(&envelope).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        let back = TraceContext::from_envelope_trace_id(&envelope).unwrap();
        assert_eq!(back.trace_id(), root.trace_id());
        assert!(TraceContext::from_envelope_trace_id("not-a-trace").is_none());
        assert!(
            TraceContext::from_envelope_trace_id("00000000-0000-0000-0000-000000000000").is_none()
        );
    }
}
