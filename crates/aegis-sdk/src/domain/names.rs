//! Validated names: services, instances, methods, event domains and types.
//!
//! Each type can only hold a value that follows the wire contract, so a name that would
//! break a NATS subject (dots, spaces, `*`, `>`, control characters, nothing at all) is
//! refused with [`ErrorKind::InvalidName`] before anything
//! reaches the wire.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

const SERVICE_NAME_MAX: usize = 64;

/// The longest method name, instance id, event domain or event type, in bytes.
pub const TOKEN_MAX: usize = 256;

/// How many characters of a refused value [`excerpt`] shows.
const EXCERPT_CHARS: usize = 64;

/// `value` quoted for an error message, cut to its first 64 characters (then `…` and
/// its length in bytes) so that a huge value does not flood the message.
///
/// # Examples
/// ```
/// use aegis_sdk::domain::names::excerpt;
/// assert_eq!(excerpt("a.b"), "\"a.b\"");
/// let long = excerpt(&"x".repeat(100_000));
/// assert!(long.ends_with("…\" (100000 bytes)") && long.len() < 100);
/// ```
pub fn excerpt(value: &str) -> String {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => {
            let shown = format!("{:?}", &value[..end]);
            let open = &shown[..shown.len() - 1];
            format!("{open}…\" ({} bytes)", value.len())
        }
    }
}

fn invalid(what: &str, value: &str, rule: &str) -> Error {
    Error::new(
        ErrorKind::InvalidName,
        format!("invalid {what} {}: {rule}", excerpt(value)),
    )
}

/// `^[a-zA-Z][a-zA-Z0-9_-]*$` and at most `max` characters.
fn check_identifier(what: &str, value: &str, allow_dash: bool, max: usize) -> Result<()> {
    let rule = if allow_dash {
        "must start with a letter and contain only letters, digits, '_' and '-'"
    } else {
        "must start with a letter and contain only letters, digits and '_'"
    };
    if value.len() > max {
        return Err(invalid(
            what,
            value,
            &format!("must be at most {max} characters"),
        ));
    }
    let mut chars = value.chars();
    match chars.next() {
        None => return Err(invalid(what, value, "must not be empty")),
        Some(c) if !c.is_ascii_alphabetic() => return Err(invalid(what, value, rule)),
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-')) {
        return Err(invalid(what, value, rule));
    }
    Ok(())
}

/// One subject token: `[a-zA-Z0-9_-]+`, at most [`TOKEN_MAX`] bytes.
fn check_token(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > TOKEN_MAX {
        return Err(invalid(
            what,
            value,
            &format!("must be at most {TOKEN_MAX} characters"),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            what,
            value,
            "must contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(value: &str) -> Result<Self> {
                $name::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self> {
                $name::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(value: &str) -> Result<Self> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

name_type!(
    /// A service name: `^[a-zA-Z][a-zA-Z0-9_-]*$`, 1 to 64 characters, used exactly as
    /// given (case kept) in subjects and queue groups.
    ServiceName
);
name_type!(
    /// An RPC method or command name: `^[a-zA-Z][a-zA-Z0-9_]*$`, at most 256 characters.
    MethodName
);
name_type!(
    /// An instance id: one subject token (`[a-zA-Z0-9_-]+`, at most 256 characters); by default
    /// `{service}-{8 lowercase hex digits}`.
    InstanceId
);
name_type!(
    /// An event domain, the first token after `events.`: `[a-zA-Z0-9_-]+`, at most 256
    /// characters.
    EventDomain
);
name_type!(
    /// An event type, the second token after `events.`: `[a-zA-Z0-9_-]+`, at most 256
    /// characters.
    EventType
);

impl ServiceName {
    /// Validates a service name.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when the name breaks the rule above.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        check_identifier("service name", &value, true, SERVICE_NAME_MAX)?;
        Ok(ServiceName(value))
    }
}

impl MethodName {
    /// Validates a method name.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when the name breaks the rule above.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        check_identifier("method name", &value, false, TOKEN_MAX)?;
        Ok(MethodName(value))
    }
}

impl InstanceId {
    /// Validates an instance id.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when the id is not a single subject token.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        check_token("instance id", &value)?;
        Ok(InstanceId(value))
    }

    /// A fresh id for `service`: `{service}-{8 lowercase hex digits}`.
    pub fn generate(service: &ServiceName) -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        InstanceId(format!("{}-{}", service, &random[..8]))
    }
}

impl EventDomain {
    /// Validates an event domain.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when it is not a single subject token.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        check_token("event domain", &value)?;
        Ok(EventDomain(value))
    }
}

impl EventType {
    /// Validates an event type.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when it is not a single subject token.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        check_token("event type", &value)?;
        Ok(EventType(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in ["echo-service", "a", "A_b-9", &"x".repeat(64)] {
            assert!(ServiceName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "9lives",
            "-x",
            "a.b",
            "a b",
            "a*",
            "a>",
            "a\nb",
            "é",
            &"x".repeat(65),
        ] {
            let err = ServiceName::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn method_names_do_not_allow_dash() {
        assert!(MethodName::new("get_user").is_ok());
        assert!(MethodName::new("get-user").is_err());
        assert!(MethodName::new("").is_err());
        assert!(MethodName::new("a.b").is_err());
    }

    #[test]
    fn generated_instance_id_follows_contract() {
        let service = ServiceName::new("echo-service").unwrap();
        let id = InstanceId::generate(&service);
        let suffix = id.as_str().strip_prefix("echo-service-").unwrap();
        assert_eq!(suffix.len(), 8);
        assert!(suffix
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    #[test]
    fn long_values_are_refused_and_not_echoed_in_full() {
        let long = "x".repeat(100_000);
        for error in [
            ServiceName::new(long.as_str()).unwrap_err(),
            MethodName::new(long.as_str()).unwrap_err(),
            InstanceId::new(long.as_str()).unwrap_err(),
            EventDomain::new(long.as_str()).unwrap_err(),
            EventType::new(long.as_str()).unwrap_err(),
        ] {
            assert_eq!(error.kind(), ErrorKind::InvalidName);
            assert!(error.message().len() < 200, "{}", error.message());
            assert!(
                error.message().contains("(100000 bytes)"),
                "{}",
                error.message()
            );
        }
        assert!(MethodName::new("m".repeat(TOKEN_MAX)).is_ok());
        assert!(MethodName::new("m".repeat(TOKEN_MAX + 1)).is_err());
        assert!(InstanceId::new("i".repeat(TOKEN_MAX)).is_ok());
        assert!(InstanceId::new("i".repeat(TOKEN_MAX + 1)).is_err());
        // Short values are shown whole; long ones cut on a character boundary.
        assert_eq!(excerpt("short"), "\"short\"");
        let cut = excerpt(&"é".repeat(100));
        assert_eq!(cut, format!("\"{}…\" (200 bytes)", "é".repeat(64)));
    }

    #[test]
    fn event_tokens() {
        assert!(EventDomain::new("order").is_ok());
        assert!(EventType::new("created-v2").is_ok());
        for bad in ["", "a.b", "*", ">", "a b"] {
            assert!(EventDomain::new(bad).is_err(), "{bad:?}");
            assert!(EventType::new(bad).is_err(), "{bad:?}");
        }
    }
}
