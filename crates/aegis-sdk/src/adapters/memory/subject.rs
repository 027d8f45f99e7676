//! NATS subject matching: `*` matches one token, `>` the rest (one token or more).

/// Whether `subject` matches `pattern`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for pattern_token in pattern.split('.') {
        match (pattern_token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_follow_nats_rules() {
        assert!(matches("order.created", "order.created"));
        assert!(matches("order.*", "order.created"));
        assert!(!matches("order.*", "order.a.b"));
        assert!(matches("order.>", "order.a.b"));
        assert!(matches("order.>", "order.created"));
        assert!(!matches("order.>", "order"));
        assert!(matches("*.created", "user.created"));
        assert!(!matches("*.created", "user.deleted"));
        assert!(!matches("order.created", "order.created.x"));
        assert!(matches("rpc.svc.*.inst", "rpc.svc.echo.inst"));
    }
}
