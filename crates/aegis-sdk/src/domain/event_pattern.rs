//! Event subscription patterns, written relative to `events.`.
//!
//! `order.created`, `order.*`, `order.>` and `*.created` are patterns; `order.*` means
//! the NATS subject filter `events.order.*`. Each token is a literal
//! (`[a-zA-Z0-9_-]+`), `*` (exactly one token) or `>` (one or more tokens, last only).

use std::fmt;

use crate::domain::names::excerpt;
use crate::error::{Error, ErrorKind, Result};

/// The longest pattern, in bytes. It travels (as `events.{pattern}`) in NATS control
/// lines of at most 4096 bytes by default; a much longer one is refused at once
/// instead of timing out.
pub const PATTERN_MAX: usize = 1024;

/// A validated event subscription pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventPattern(String);

impl EventPattern {
    /// Validates a pattern.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an empty pattern, one longer than
    /// [`PATTERN_MAX`] bytes, an empty token, a token with
    /// characters other than `[a-zA-Z0-9_-]` (and not a lone `*` or `>`), or `>` before
    /// the last token.
    ///
    /// # Examples
    /// ```
    /// use aegis_sdk::domain::event_pattern::EventPattern;
    /// let pattern = EventPattern::new("order.*").unwrap();
    /// assert_eq!(pattern.filter_subject(), "events.order.*");
    /// assert!(pattern.matches("events.order.created"));
    /// assert!(!pattern.matches("events.order.a.b"));
    /// assert!(EventPattern::new("order.>.x").is_err());
    /// ```
    pub fn new(pattern: impl Into<String>) -> Result<Self> {
        let pattern = pattern.into();
        let invalid = |rule: &str| {
            Error::new(
                ErrorKind::InvalidName,
                format!("invalid event pattern {}: {rule}", excerpt(&pattern)),
            )
        };
        if pattern.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if pattern.len() > PATTERN_MAX {
            return Err(invalid(&format!("must be at most {PATTERN_MAX} bytes")));
        }
        let tokens: Vec<&str> = pattern.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            match *token {
                "" => return Err(invalid("tokens must not be empty")),
                "*" => {}
                ">" if i + 1 == tokens.len() => {}
                ">" => return Err(invalid("`>` may only be the last token")),
                literal => {
                    if !literal
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(invalid(
                            "tokens contain only letters, digits, '_' and '-', or are `*` or `>`",
                        ));
                    }
                }
            }
        }
        Ok(EventPattern(pattern))
    }

    /// The pattern as written (relative to `events.`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The NATS subject filter: `events.{pattern}`.
    pub fn filter_subject(&self) -> String {
        format!("events.{}", self.0)
    }

    /// Whether `subject` (a full subject such as `events.order.created`) matches.
    pub fn matches(&self, subject: &str) -> bool {
        subject_matches(&self.filter_subject(), subject)
    }
}

/// Whether the NATS subject filter `filter` (wildcards allowed) matches every subject
/// that `subject` (wildcards allowed too) can stand for.
///
/// `covers("events.>", "events.order.*")` is true; `covers("events.*", "events.a.b")`
/// is false.
pub fn subject_covers(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(s)) if s != ">" => {}
            (Some(f), Some(s)) if f == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether the concrete `subject` matches the filter `filter`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    subject_covers(filter, subject)
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::str::FromStr for EventPattern {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self> {
        EventPattern::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_patterns() {
        for ok in [
            "order.created",
            "order.*",
            "order.>",
            "*.created",
            ">",
            "a-b_c.*",
        ] {
            assert!(EventPattern::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "order.", ".x", "a..b", ">.x", "a b", "a.b*", "é", "a.>.b",
        ] {
            let err = EventPattern::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn long_patterns_are_refused_without_echoing_them() {
        // `a.a.a...`: valid tokens, only too long.
        let at_max = vec!["a"; PATTERN_MAX / 2].join(".");
        assert!(at_max.len() <= PATTERN_MAX);
        assert!(EventPattern::new(at_max).is_ok());
        let long = vec!["order"; 1_000].join(".");
        let err = EventPattern::new(long).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        assert!(
            err.message().contains("at most 1024 bytes"),
            "{}",
            err.message()
        );
        assert!(err.message().len() < 200, "{}", err.message());
    }

    #[test]
    fn wildcard_matching_follows_nats_rules() {
        let star = EventPattern::new("order.*").unwrap();
        assert!(star.matches("events.order.created"));
        assert!(!star.matches("events.order.a.b"));
        assert!(!star.matches("events.order"));

        let tail = EventPattern::new("order.>").unwrap();
        assert!(tail.matches("events.order.created"));
        assert!(tail.matches("events.order.a.b"));
        assert!(!tail.matches("events.order"));

        let created = EventPattern::new("*.created").unwrap();
        assert!(created.matches("events.user.created"));
        assert!(!created.matches("events.order.updated"));
    }

    #[test]
    fn covering_filters() {
        assert!(subject_covers("events.>", "events.order.*"));
        assert!(subject_covers("events.>", "events.order.>"));
        assert!(subject_covers("events.*.*", "events.order.*"));
        assert!(!subject_covers("events.*", "events.order.>"));
        assert!(!subject_covers("events.order.*", "events.*.created"));
        assert!(!subject_covers("other.>", "events.order.created"));
    }
}
