//! Well-known error codes that start a failure's `error` text.
//!
//! Python clients look for these as substrings, so a failure that has a code puts it
//! first: `NOT_ACTIVE: instance x is standby for group default`.

/// The instance is a standby of a single-active group.
pub const NOT_ACTIVE: &str = "NOT_ACTIVE";
/// The service cannot take the request now (stopping, overloaded).
pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
/// The handler ran past its deadline.
pub const TIMEOUT: &str = "TIMEOUT";
/// The request could not be decoded or failed validation.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
/// The handler failed or panicked.
pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
/// A single-active group is electing its leader.
pub const ELECTING: &str = "ELECTING";

/// Every known code, in no particular order.
pub const ALL: [&str; 6] = [
    NOT_ACTIVE,
    SERVICE_UNAVAILABLE,
    TIMEOUT,
    INVALID_REQUEST,
    INTERNAL_ERROR,
    ELECTING,
];

/// The known code `text` starts with (followed by `:` or the end), if any.
pub fn leading_code(text: &str) -> Option<&'static str> {
    ALL.into_iter().find(|code| {
        text.strip_prefix(code)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    })
}

/// `"{code}: {message}"`, the form Python clients expect.
pub fn with_code(code: &str, message: impl std::fmt::Display) -> String {
    format!("{code}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_leading_code_only() {
        assert_eq!(leading_code("NOT_ACTIVE: x"), Some(NOT_ACTIVE));
        assert_eq!(leading_code("TIMEOUT"), Some(TIMEOUT));
        assert_eq!(leading_code("TIMEOUTS happen"), None);
        assert_eq!(leading_code("oops NOT_ACTIVE: x"), None);
    }
}
