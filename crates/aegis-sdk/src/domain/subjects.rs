//! Subject and queue-group names of the wire contract.

use super::names::{EventDomain, EventType, InstanceId, MethodName, ServiceName};
use crate::error::{Error, ErrorKind, Result};

/// `rpc.{service}.{method}`: where responders of a method listen.
pub fn rpc(service: &ServiceName, method: &MethodName) -> String {
    format!("rpc.{service}.{method}")
}

/// `rpc.{service}`: the queue group that load-balances a service's responders.
pub fn rpc_queue_group(service: &ServiceName) -> String {
    format!("rpc.{service}")
}

/// `rpc.{service}.{method}.{instance}`: a subject only one instance answers on, used
/// by discovery to route a call to a chosen instance. Python peers do not listen here.
pub fn rpc_instance(service: &ServiceName, method: &MethodName, instance: &InstanceId) -> String {
    format!("rpc.{service}.{method}.{instance}")
}

/// The method an instance answers on its own subject to say it is alive:
/// `rpc.{service}._alive.{instance}`, with an empty reply. Method names cannot start
/// with `_`, so it never meets a real method. Clients ask it while they wait on an
/// exclusive call, to tell a slow leader from a dead one.
pub const LIVENESS_METHOD: &str = "_alive";

/// `rpc.{service}._alive.{instance}`: see [`LIVENESS_METHOD`].
pub fn liveness(service: &ServiceName, instance: &InstanceId) -> String {
    format!("rpc.{service}.{LIVENESS_METHOD}.{instance}")
}

/// `events.{domain}.{event_type}`.
pub fn event(domain: &EventDomain, event_type: &EventType) -> String {
    format!("events.{domain}.{event_type}")
}

/// `commands.{service}.{command}`.
pub fn command(service: &ServiceName, command: &MethodName) -> String {
    format!("commands.{service}.{command}")
}

fn invalid_subject(subject: &str, rule: &str) -> Error {
    Error::new(
        ErrorKind::InvalidName,
        format!("invalid subject {subject:?}: {rule}"),
    )
}

/// Checks a subject a message is sent to (publish, request): not empty, no whitespace,
/// and no empty token (`a..b`, or a leading or trailing `.`). Wildcard tokens are
/// taken as they are.
///
/// A NATS server accepts a message on a subject with an empty token but delivers it to
/// no wildcard subscriber, so every transport refuses one before sending.
///
/// # Errors
/// [`ErrorKind::InvalidName`].
pub fn check_subject(subject: &str) -> Result<()> {
    if subject.is_empty() {
        return Err(invalid_subject(subject, "empty"));
    }
    // Every request and reply passes here: one pass over the bytes when they are ASCII
    // (as the SDK's own subjects are), the same checks by `char` otherwise.
    let (whitespace, empty_token) = if subject.is_ascii() {
        let mut token_len = 0usize;
        let mut empty_token = false;
        let mut whitespace = false;
        for &byte in subject.as_bytes() {
            match byte {
                b'.' => {
                    empty_token |= token_len == 0;
                    token_len = 0;
                }
                _ => {
                    whitespace |= byte.is_ascii_whitespace() || byte == 0x0b;
                    token_len += 1;
                }
            }
        }
        (whitespace, empty_token || token_len == 0)
    } else {
        (
            subject.contains(char::is_whitespace),
            subject.split('.').any(str::is_empty),
        )
    };
    if whitespace {
        return Err(invalid_subject(subject, "contains whitespace"));
    }
    if empty_token {
        return Err(invalid_subject(subject, "has an empty token"));
    }
    Ok(())
}

/// Checks a subject to subscribe to: as [`check_subject`], and `>` only as the last
/// token (`*` and `>` are wildcards as whole tokens only: `a.b*` is a literal).
///
/// # Errors
/// [`ErrorKind::InvalidName`].
pub fn check_filter(subject: &str) -> Result<()> {
    check_subject(subject)?;
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token == ">" && tokens.peek().is_some() {
            return Err(invalid_subject(subject, "`>` must be the last token"));
        }
    }
    Ok(())
}

/// Checks a queue group name: not empty, no whitespace.
///
/// # Errors
/// [`ErrorKind::InvalidName`].
pub fn check_queue_group(group: &str) -> Result<()> {
    if group.is_empty() || group.contains(char::is_whitespace) {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!("invalid queue group {group:?}: empty or contains whitespace"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_to_send_to() {
        for good in [
            "a",
            "a.b",
            "rpc.svc.m",
            "a.*",
            "a.>",
            "odd.\u{e9}",
            "_INBOX.x.y",
        ] {
            assert!(check_subject(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            " ",
            "a b",
            "a\tb",
            "a\u{a0}b",
            "a..b",
            "a.",
            ".a",
            ".",
            "a\x0bb",
            "a\rb",
            "a.\nb",
            "\u{e9}..b",
            "\u{e9}.b\u{2003}",
        ] {
            let err = check_subject(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn the_ascii_pass_agrees_with_the_char_checks() {
        // Every ASCII byte in every position of a short subject: the fast pass must
        // refuse exactly what the `char` checks refuse.
        for byte in 0u8..128 {
            for template in ["X", "aX", "Xa", "a.X", "X.a", "a.Xb.c"] {
                let subject = template.replace('X', &char::from(byte).to_string());
                let by_char = !subject.is_empty()
                    && !subject.contains(char::is_whitespace)
                    && !subject.split('.').any(str::is_empty);
                assert_eq!(check_subject(&subject).is_ok(), by_char, "{subject:?}");
            }
        }
    }

    #[test]
    fn subjects_to_subscribe_to() {
        for good in [">", "a.>", "*.*", "a.*.c", "a.b*", "a.>b.c"] {
            assert!(check_filter(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a..b", "a.>.b", ">.a", "a b"] {
            let err = check_filter(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn queue_groups() {
        assert!(check_queue_group("rpc.svc").is_ok());
        for bad in ["", "a b", "a\tb"] {
            assert!(check_queue_group(bad).is_err(), "{bad:?}");
        }
    }
}
