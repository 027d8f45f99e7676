//! Failover policies: how long a lease lasts, how often the leader renews it, and how
//! long standbys wait for a renewal before they take over.

use std::time::Duration;

use crate::error::{Error, Result};

/// The timing of a single-active group.
///
/// - `lease`: the TTL the server puts on every write of the leader key (whole seconds,
///   at least 1 s). A leader that dies without clean-up loses the key after it, and
///   standbys are told at once by an expiry marker; this is the backstop.
/// - `renew_interval`: how often the leader rewrites the key (a revision-checked update
///   with a fresh TTL).
/// - `takeover_delay`: how long a standby waits after the last renewal it saw before it
///   takes the lease over with a compare-and-set on that revision. This is what makes
///   failover faster than the lease.
///
/// The leader acts only while its own clock says `now < last successful renew (time it
/// was sent) + leader_window`, with `leader_window = 3/4 * min(takeover_delay, lease)`.
/// A standby starts its delay when it *receives* that renewal, which is later than the
/// leader sent it, and the server expires the key no earlier than `lease` after it
/// wrote it; so the leader stops at least `1/4 * min(takeover_delay, lease)` before any
/// other instance can take over. That margin absorbs clock-rate differences and the
/// time between the leader's check and the handler's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailoverPolicy {
    lease: Duration,
    renew_interval: Duration,
    takeover_delay: Duration,
}

impl Default for FailoverPolicy {
    /// [`FailoverPolicy::balanced`].
    fn default() -> Self {
        Self::balanced()
    }
}

impl FailoverPolicy {
    /// Lease 1 s, renew every 100 ms, take over 400 ms after the last renewal: a crashed
    /// leader is replaced in about half a second. Needs a responsive machine: a leader
    /// stalled for 300 ms steps down.
    pub const fn aggressive() -> Self {
        FailoverPolicy {
            lease: Duration::from_secs(1),
            renew_interval: Duration::from_millis(100),
            takeover_delay: Duration::from_millis(400),
        }
    }

    /// Lease 2 s, renew every 250 ms, take over 1 s after the last renewal: a crashed
    /// leader is replaced in 1 to 1.3 s. The default.
    pub const fn balanced() -> Self {
        FailoverPolicy {
            lease: Duration::from_secs(2),
            renew_interval: Duration::from_millis(250),
            takeover_delay: Duration::from_secs(1),
        }
    }

    /// Lease 5 s (as the Python SDK), renew every second, take over 3 s after the last
    /// renewal: tolerates long pauses of the leader, fails over in 3 to 4 s.
    pub const fn conservative() -> Self {
        FailoverPolicy {
            lease: Duration::from_secs(5),
            renew_interval: Duration::from_secs(1),
            takeover_delay: Duration::from_secs(3),
        }
    }

    /// A policy of your own.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when `lease` is
    /// under 1 s or not whole seconds (the server's TTL granularity), or when
    /// `renew_interval` is zero or not shorter than the leader window
    /// (`3/4 * min(takeover_delay, lease)`): the leader must get a renewal in before it
    /// has to step down.
    pub fn custom(
        lease: Duration,
        renew_interval: Duration,
        takeover_delay: Duration,
    ) -> Result<Self> {
        if lease < Duration::from_secs(1) || lease.subsec_nanos() != 0 {
            return Err(Error::invalid_argument(format!(
                "lease must be whole seconds and at least 1 s, not {lease:?}"
            )));
        }
        let policy = FailoverPolicy {
            lease,
            renew_interval,
            takeover_delay,
        };
        if renew_interval.is_zero() || renew_interval >= policy.leader_window() {
            return Err(Error::invalid_argument(format!(
                "renew interval {renew_interval:?} must be > 0 and shorter than the leader \
                 window {:?} (3/4 of the shorter of lease and takeover delay)",
                policy.leader_window()
            )));
        }
        Ok(policy)
    }

    /// The server-side TTL of the leader key.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often the leader renews.
    pub fn renew_interval(&self) -> Duration {
        self.renew_interval
    }

    /// How long standbys wait after the last renewal they saw.
    pub fn takeover_delay(&self) -> Duration {
        self.takeover_delay
    }

    /// How long after a renewal was sent the leader keeps acting without another
    /// successful one: `3/4 * min(takeover_delay, lease)`.
    pub fn leader_window(&self) -> Duration {
        self.takeover_delay.min(self.lease) * 3 / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_customs() {
        for p in [
            FailoverPolicy::aggressive(),
            FailoverPolicy::balanced(),
            FailoverPolicy::conservative(),
        ] {
            assert_eq!(
                FailoverPolicy::custom(p.lease(), p.renew_interval(), p.takeover_delay()).unwrap(),
                p
            );
            assert!(p.leader_window() < p.takeover_delay());
            assert!(p.leader_window() < p.lease());
        }
    }

    #[test]
    fn rejects_bad_timing() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert!(FailoverPolicy::custom(ms(500), ms(100), ms(400)).is_err());
        assert!(FailoverPolicy::custom(ms(1500), ms(100), ms(400)).is_err());
        assert!(FailoverPolicy::custom(s(1), ms(0), ms(400)).is_err());
        assert!(FailoverPolicy::custom(s(1), ms(300), ms(400)).is_err());
    }
}
