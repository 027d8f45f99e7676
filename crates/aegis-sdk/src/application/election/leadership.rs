//! What a program and the RPC dispatcher see of an election: the current role, the
//! fencing token, and the changes as typed events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch, Notify};
// Tokio's clock: the real one in production, a paused one in tests.
use tokio::time::Instant;

use crate::domain::election::GroupName;

/// Why an instance stopped being the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// The service stopped and handed the lease over.
    Stopped,
    /// Another instance holds the lease now, or the key was removed.
    LeaseLost,
    /// Renewals failed (store errors) until the leader window ran out.
    RenewFailed,
    /// No renewal succeeded within the leader window (the process stalled, or renewals
    /// were too slow), so the leader stepped down by its own clock.
    DemotedByClock,
}

/// A change of leadership of this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeadershipEvent {
    /// This instance became the leader of its group.
    Elected {
        /// The fencing token of the term: grows with every term of the group.
        token: u64,
    },
    /// This instance is no longer the leader.
    Lost {
        /// The token of the term that ended.
        token: u64,
        /// Why.
        reason: LossReason,
    },
}

/// The role of this instance in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeadershipStatus {
    /// Not taking part (the service is not running).
    Inactive,
    /// A standby; `leader` names the leader if one is known.
    Standby {
        /// The leading instance, as last seen.
        leader: Option<String>,
    },
    /// The leader, in the term with this fencing token.
    Leader {
        /// The fencing token.
        token: u64,
    },
}

/// The leadership of one service instance in its single-active group. Cheap to clone.
///
/// The leader check is made against the clock on every use: an instance whose lease is
/// not fresh stops being the leader here even before its election task notices.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    group: GroupName,
    gate: Mutex<Gate>,
    status: watch::Sender<LeadershipStatus>,
    events: broadcast::Sender<LeadershipEvent>,
    /// Exclusive calls admitted and still running.
    running: AtomicUsize,
    idle: Notify,
}

/// Held while an admitted exclusive call runs.
pub(crate) struct Admission {
    leadership: Leadership,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.leadership.inner.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.leadership.inner.idle.notify_waiters();
        }
    }
}

#[derive(Default)]
struct Gate {
    token: Option<u64>,
    valid_until: Option<Instant>,
    leader_hint: Option<String>,
    /// A stopping leader: it still holds (and renews) the lease while the exclusive
    /// calls it admitted finish, but admits no new ones.
    closing: bool,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("group", &self.inner.group)
            .field("status", &self.status())
            .finish()
    }
}

impl Leadership {
    pub(crate) fn new(group: GroupName) -> Self {
        let (status, _) = watch::channel(LeadershipStatus::Inactive);
        let (events, _) = broadcast::channel(64);
        Leadership {
            inner: Arc::new(Inner {
                group,
                gate: Mutex::new(Gate::default()),
                status,
                events,
                running: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        // The gate holds plain values; a panic elsewhere cannot leave it inconsistent.
        self.inner.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group.
    pub fn group(&self) -> &GroupName {
        &self.inner.group
    }

    /// The fencing token if this instance leads right now (by its own clock).
    pub fn fencing_token(&self) -> Option<u64> {
        let gate = self.gate();
        match (gate.token, gate.valid_until) {
            (Some(token), Some(until)) if Instant::now() < until => Some(token),
            _ => None,
        }
    }

    /// True if this instance leads right now (by its own clock).
    pub fn is_leader(&self) -> bool {
        self.fencing_token().is_some()
    }

    /// The role as the election task last set it.
    pub fn status(&self) -> LeadershipStatus {
        self.inner.status.borrow().clone()
    }

    /// A receiver of every role change.
    pub fn watch(&self) -> watch::Receiver<LeadershipStatus> {
        self.inner.status.subscribe()
    }

    /// Leadership events from now on.
    pub fn events(&self) -> broadcast::Receiver<LeadershipEvent> {
        self.inner.events.subscribe()
    }

    /// The token and a guard to hold while the call runs if leading now, else the
    /// leader to redirect to, if known.
    pub(crate) fn admit(&self) -> Result<(u64, Admission), Option<String>> {
        let gate = self.gate();
        match (gate.token, gate.valid_until) {
            (Some(token), Some(until)) if !gate.closing && Instant::now() < until => {
                // Counted under the gate's lock, so `close` then `idle` misses no call.
                self.inner.running.fetch_add(1, Ordering::AcqRel);
                let admission = Admission {
                    leadership: self.clone(),
                };
                Ok((token, admission))
            }
            // A closing leader names nobody: callers wait for its successor.
            _ if gate.closing => Err(None),
            _ => Err(gate.leader_hint.clone()),
        }
    }

    /// Admits no more exclusive calls, keeping the term (and its renewals) until those
    /// running have finished; see [`idle`](Self::idle).
    pub(crate) fn close(&self) {
        self.gate().closing = true;
    }

    /// Resolves when no admitted exclusive call runs any more.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn promote(&self, token: u64, valid_until: Instant, instance: &str) {
        {
            let mut gate = self.gate();
            gate.token = Some(token);
            gate.valid_until = Some(valid_until);
            gate.leader_hint = Some(instance.to_owned());
            gate.closing = false;
        }
        self.inner
            .status
            .send_replace(LeadershipStatus::Leader { token });
        let _ = self.inner.events.send(LeadershipEvent::Elected { token });
    }

    pub(crate) fn extend(&self, valid_until: Instant) {
        self.gate().valid_until = Some(valid_until);
    }

    /// Ends the term (first, so no request is admitted any more), then tells.
    pub(crate) fn demote(&self, reason: LossReason) {
        let token = {
            let mut gate = self.gate();
            gate.valid_until = None;
            gate.leader_hint = None;
            gate.closing = false;
            gate.token.take()
        };
        let status = if reason == LossReason::Stopped {
            LeadershipStatus::Inactive
        } else {
            LeadershipStatus::Standby { leader: None }
        };
        self.set_status(status);
        if let Some(token) = token {
            let _ = self
                .inner
                .events
                .send(LeadershipEvent::Lost { token, reason });
        }
    }

    pub(crate) fn set_standby(&self, leader: Option<String>) {
        self.gate().leader_hint = leader.clone();
        self.set_status(LeadershipStatus::Standby { leader });
    }

    pub(crate) fn set_inactive(&self) {
        self.gate().leader_hint = None;
        self.set_status(LeadershipStatus::Inactive);
    }

    /// Tells watchers of a change only: renewals seen by standbys change nothing.
    fn set_status(&self, status: LeadershipStatus) {
        self.inner.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}
