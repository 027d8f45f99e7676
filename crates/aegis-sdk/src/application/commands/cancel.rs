//! A cancellation signal shared by a running command, its worker and its handler.

use tokio::sync::watch;

/// Why a command was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelReason {
    /// A sender asked for it.
    Requested,
    /// The command ran past its timeout.
    TimedOut,
    /// The worker is stopping and gave up waiting for it.
    Stopping,
}

/// A one-way switch: once cancelled, it stays cancelled with its first reason.
/// Cheap to clone; clones share the switch.
#[derive(Debug, Clone)]
pub(crate) struct CancelToken {
    tx: std::sync::Arc<watch::Sender<Option<CancelReason>>>,
}

impl CancelToken {
    pub(crate) fn new() -> Self {
        CancelToken {
            tx: std::sync::Arc::new(watch::channel(None).0),
        }
    }

    /// Cancels with `reason` unless already cancelled. Returns whether this call did it.
    pub(crate) fn cancel(&self, reason: CancelReason) -> bool {
        self.tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        })
    }

    /// The reason, once cancelled.
    pub(crate) fn reason(&self) -> Option<CancelReason> {
        *self.tx.borrow()
    }

    /// Resolves once cancelled, with the reason.
    pub(crate) async fn cancelled(&self) -> CancelReason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            // The sender lives in `self`, so `changed` cannot fail while we wait.
            if rx.changed().await.is_err() {
                return CancelReason::Stopping;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins() {
        let token = CancelToken::new();
        assert_eq!(token.reason(), None);
        let waiter = tokio::spawn({
            let token = token.clone();
            async move { token.cancelled().await }
        });
        assert!(token.cancel(CancelReason::TimedOut));
        assert!(!token.cancel(CancelReason::Requested));
        assert_eq!(waiter.await.unwrap(), CancelReason::TimedOut);
        assert_eq!(token.cancelled().await, CancelReason::TimedOut);
    }
}
