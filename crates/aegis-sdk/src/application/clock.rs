//! Deadlines from durations that users choose, and that may be as large as
//! `Duration::MAX` ("no limit"): never an overflow.

use std::time::Duration;

use tokio::time::Instant;

/// The farthest deadline used: about 30 years away, "never" for any running program.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The instant `duration` from now, or about 30 years from now if that is sooner.
pub(crate) fn after(duration: Duration) -> Instant {
    Instant::now() + duration.min(FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_duration_is_far_not_an_overflow() {
        let now = Instant::now();
        assert!(after(Duration::MAX) >= now + FAR);
        let soon = after(Duration::from_millis(5));
        assert!(soon >= now + Duration::from_millis(5) && soon < now + Duration::from_secs(5));
    }
}
