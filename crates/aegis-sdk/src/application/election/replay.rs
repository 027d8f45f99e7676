//! The leader's memory of the exclusive calls it ran, so that a caller's retry of the
//! same request (same `message_id`) is answered with the first run's reply instead of
//! running the method again.
//!
//! Callers retry an exclusive call they heard nothing back from within a short budget
//! (the leader may have died with the request in flight); when the leader is merely
//! slow, the retry lands here and waits for the run already under way. The memory is
//! bounded in size and age: entries older than [`KEEP`] or beyond [`CAPACITY`] are
//! forgotten, oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::ports::Headers;

/// How long a finished call's reply is kept for retries.
pub(crate) const KEEP: Duration = Duration::from_secs(60);
/// How many calls are remembered at most.
pub(crate) const CAPACITY: usize = 10_000;

/// A reply as it was sent: headers and body.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) headers: Headers,
    pub(crate) payload: Bytes,
}

type Slot = watch::Receiver<Option<Arc<Recorded>>>;

/// Recent exclusive calls by request id.
#[derive(Default)]
pub(crate) struct ReplayCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Each id with the number of its claim, so that eviction by age never removes a
    /// later claim of an id that was abandoned and claimed again.
    by_id: HashMap<Arc<str>, (u64, Slot)>,
    order: VecDeque<(Instant, u64, Arc<str>)>,
    claims: u64,
}

/// What to do with a request: run it (and record its reply), or wait for the run of
/// the same request that is under way or done.
pub(crate) enum Claim {
    /// First sight of this id: run the method, then [`Run::finish`].
    Run(Run),
    /// Seen before: the reply of that run, once there is one.
    Replay(Slot),
}

/// The right to run a request once. Dropping it unfinished forgets the id, so that a
/// later retry runs the method (nothing was answered).
pub(crate) struct Run {
    cache: Arc<ReplayCache>,
    id: Arc<str>,
    claim: u64,
    sender: Option<watch::Sender<Option<Arc<Recorded>>>>,
}

impl ReplayCache {
    /// Looks `id` up, claiming it for a run when it is new.
    pub(crate) fn claim(self: &Arc<Self>, id: &str) -> Claim {
        let mut entries = self.lock();
        let now = Instant::now();
        entries.evict(now);
        if let Some((_, slot)) = entries.by_id.get(id) {
            return Claim::Replay(slot.clone());
        }
        let id: Arc<str> = Arc::from(id);
        let (sender, slot) = watch::channel(None);
        entries.claims += 1;
        let claim = entries.claims;
        entries.by_id.insert(id.clone(), (claim, slot));
        entries.order.push_back((now, claim, id.clone()));
        Claim::Run(Run {
            cache: self.clone(),
            id,
            claim,
            sender: Some(sender),
        })
    }

    /// How many calls are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Plain maps: a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entries {
    fn evict(&mut self, now: Instant) {
        while let Some((at, claim, id)) = self.order.front() {
            let expired = now.duration_since(*at) > KEEP;
            if !expired && self.order.len() <= CAPACITY {
                break;
            }
            if self.by_id.get(id).is_some_and(|(c, _)| c == claim) {
                self.by_id.remove(id);
            }
            self.order.pop_front();
        }
    }
}

impl Run {
    /// Records the reply and hands it to every retry waiting for it.
    pub(crate) fn finish(mut self, reply: Recorded) {
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(Arc::new(reply)));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.sender.is_some() {
            // Not finished (the handler was aborted): forget it so a retry runs again.
            let mut entries = self.cache.lock();
            if entries
                .by_id
                .get(&self.id)
                .is_some_and(|(c, _)| *c == self.claim)
            {
                entries.by_id.remove(&self.id);
            }
        }
    }
}

/// Waits for the reply recorded in `slot`; `None` when that run was abandoned.
pub(crate) async fn replayed(mut slot: Slot) -> Option<Arc<Recorded>> {
    slot.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|reply| reply.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &'static str) -> Recorded {
        Recorded {
            headers: Headers::new(),
            payload: Bytes::from_static(body.as_bytes()),
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_runs_reply() {
        let cache = Arc::new(ReplayCache::default());
        let Claim::Run(run) = cache.claim("a") else {
            panic!("first sight must run")
        };
        let Claim::Replay(waiting) = cache.claim("a") else {
            panic!("a retry must not run again")
        };
        let waiter = tokio::spawn(replayed(waiting));
        run.finish(reply("done"));
        let got = waiter.await.unwrap().expect("a reply");
        assert_eq!(&got.payload[..], b"done");
        // Done calls are replayed too.
        let Claim::Replay(done) = cache.claim("a") else {
            panic!("a retry after the reply must not run again")
        };
        assert_eq!(&replayed(done).await.unwrap().payload[..], b"done");
        assert!(matches!(cache.claim("b"), Claim::Run(_)));
    }

    #[tokio::test]
    async fn an_abandoned_run_lets_the_next_retry_run() {
        let cache = Arc::new(ReplayCache::default());
        let Claim::Run(run) = cache.claim("a") else {
            panic!("first sight must run")
        };
        let Claim::Replay(waiting) = cache.claim("a") else {
            panic!("a retry must not run again")
        };
        drop(run);
        assert!(replayed(waiting).await.is_none());
        assert!(matches!(cache.claim("a"), Claim::Run(_)));
    }

    #[test]
    fn memory_is_bounded() {
        let cache = Arc::new(ReplayCache::default());
        for i in 0..CAPACITY + 50 {
            if let Claim::Run(run) = cache.claim(&i.to_string()) {
                run.finish(reply("x"));
            }
        }
        assert!(cache.len() <= CAPACITY + 1, "{} entries", cache.len());
        // The oldest were forgotten, the newest kept.
        assert!(matches!(cache.claim("0"), Claim::Run(_)));
        let newest = (CAPACITY + 49).to_string();
        assert!(matches!(cache.claim(&newest), Claim::Replay(_)));
    }
}
