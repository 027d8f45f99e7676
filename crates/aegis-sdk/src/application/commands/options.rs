//! How a command worker behaves: concurrency, look-ahead, ack wait, aging, backoff.

use std::time::Duration;

/// Settings of a command worker. Every field has a default (see [`Default`]); set the
/// ones you need with the builder methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Handlers of this command running at once in this worker (default 4).
    pub concurrency: usize,
    /// Commands this worker holds beyond those running, to choose the most urgent from
    /// (default 16). Priority is exact among the commands a worker holds; larger values
    /// see further into a backlog but leave less of it to other workers.
    pub lookahead: usize,
    /// How long the server waits for an acknowledgement before it hands a command to
    /// another worker (default 30 s). A live worker renews it every third of this, so
    /// it bounds only how long a crashed worker's command waits. Used when the shared
    /// consumer is created; an existing consumer keeps its own.
    pub ack_wait: Duration,
    /// The wait that is worth one priority level (default 5 s): a low command that waited
    /// three of these outranks a fresh critical one. Zero disables aging.
    pub priority_aging: Duration,
    /// The delay before the first retry of a failed command (default 200 ms); it doubles
    /// with each further attempt.
    pub retry_backoff: Duration,
    /// The longest delay between retries (default 30 s).
    pub max_backoff: Duration,
    /// How long one pull request waits for commands when the queue is empty (default
    /// 1 s); stopping may take this long.
    pub pull_expires: Duration,
    /// How long a cancelled handler may take to return before it is dropped (default
    /// 2 s).
    pub cancel_grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 4,
            lookahead: 16,
            ack_wait: Duration::from_secs(30),
            priority_aging: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            pull_expires: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(2),
        }
    }
}

impl WorkerOptions {
    /// Sets [`concurrency`](Self::concurrency) (at least 1).
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// Sets [`lookahead`](Self::lookahead).
    pub fn lookahead(mut self, count: usize) -> Self {
        self.lookahead = count;
        self
    }

    /// Sets [`ack_wait`](Self::ack_wait) (at least 1 s).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait.max(Duration::from_secs(1));
        self
    }

    /// Sets [`priority_aging`](Self::priority_aging).
    pub fn priority_aging(mut self, aging: Duration) -> Self {
        self.priority_aging = aging;
        self
    }

    /// Sets [`retry_backoff`](Self::retry_backoff).
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Sets [`max_backoff`](Self::max_backoff).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Sets [`pull_expires`](Self::pull_expires) (at least 100 ms).
    pub fn pull_expires(mut self, expires: Duration) -> Self {
        self.pull_expires = expires.max(Duration::from_millis(100));
        self
    }

    /// Sets [`cancel_grace`](Self::cancel_grace).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = WorkerOptions::default()
            .retry_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500));
        let delays: Vec<u128> = (1..=5).map(|a| options.backoff(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }
}
