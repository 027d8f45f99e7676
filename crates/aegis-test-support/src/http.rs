//! A tiny HTTP/1.0 GET client for the monitoring port, and just enough JSON picking.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GETs `path` from `127.0.0.1:port` and returns the status code and the body.
pub(crate) fn get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("HTTP response without end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("HTTP response without status code"))?;
    Ok((status, body.to_owned()))
}

/// The text right after `"key":` (first occurrence), with leading whitespace removed.
fn value_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\"");
    let mut rest = json;
    loop {
        let at = rest.find(&needle)? + needle.len();
        rest = &rest[at..];
        if let Some(value) = rest.trim_start().strip_prefix(':') {
            return Some(value.trim_start());
        }
    }
}

/// The first string value of `key` in `json` (no unescaping; fine for names).
pub(crate) fn json_str(json: &str, key: &str) -> Option<String> {
    let value = value_after(json, key)?.strip_prefix('"')?;
    let end = value.find('"')?;
    Some(value[..end].to_owned())
}

/// All string values of `key` in `json`, in order (no unescaping; fine for names).
pub(crate) fn json_strs(json: &str, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\"");
    let mut values = Vec::new();
    let mut rest = json;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at..];
        if let Some(value) = json_str(rest, key) {
            values.push(value);
        }
        rest = &rest[needle.len()..];
    }
    values
}

/// The first unsigned integer value of `key` in `json`.
#[cfg(test)]
pub(crate) fn json_u64(json: &str, key: &str) -> Option<u64> {
    let value = value_after(json, key)?;
    let end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    value[..end].parse().ok()
}
