//! The waiting room of a worker: commands it holds but has not started, taken most
//! urgent first, with aging so that low priorities still advance.
//!
//! A command's score is its priority rank (low 0 ... critical 3) plus one for every
//! `aging` step it has waited. The highest score goes first; ties go to the command that
//! arrived first. So under a steady stream of high-priority work a low-priority command
//! waits at most about `3 * aging` before it outranks fresh critical commands.

use std::time::{Duration, Instant};

use crate::domain::Priority;

fn rank(priority: Priority) -> u64 {
    match priority {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}

struct Entry<T> {
    priority: Priority,
    arrived: Instant,
    seq: u64,
    item: T,
}

/// Held commands ordered by priority with aging.
pub(crate) struct WaitQueue<T> {
    entries: Vec<Entry<T>>,
    aging: Duration,
    next_seq: u64,
}

impl<T> WaitQueue<T> {
    /// An empty queue; `aging` is the wait worth one priority level (zero disables aging).
    pub(crate) fn new(aging: Duration) -> Self {
        WaitQueue {
            entries: Vec::new(),
            aging,
            next_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push(&mut self, priority: Priority, item: T) {
        self.push_at(priority, item, Instant::now());
    }

    pub(crate) fn push_at(&mut self, priority: Priority, item: T, arrived: Instant) {
        self.entries.push(Entry {
            priority,
            arrived,
            seq: self.next_seq,
            item,
        });
        self.next_seq += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        self.pop_at(Instant::now())
    }

    /// Removes the command to run next, judged at `now`.
    pub(crate) fn pop_at(&mut self, now: Instant) -> Option<T> {
        let score = |e: &Entry<T>| {
            let waited = now.saturating_duration_since(e.arrived);
            let aged = if self.aging.is_zero() {
                0
            } else {
                (waited.as_nanos() / self.aging.as_nanos()) as u64
            };
            // Higher score first; among equals, the lower sequence (older) first.
            (rank(e.priority) + aged, u64::MAX - e.seq)
        };
        let best = self
            .entries
            .iter()
            .enumerate()
            .max_by_key(|(_, e)| score(e))
            .map(|(i, _)| i)?;
        Some(self.entries.swap_remove(best).item)
    }

    /// Every held item, for keep-alives.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.item)
    }

    /// Takes every held item out, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.entries.sort_by_key(|e| e.seq);
        self.entries.drain(..).map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_urgent_first_then_arrival_order() {
        let now = Instant::now();
        let mut queue = WaitQueue::new(Duration::from_secs(60));
        for (i, p) in [
            Priority::Low,
            Priority::Normal,
            Priority::Critical,
            Priority::High,
            Priority::Normal,
            Priority::Critical,
        ]
        .into_iter()
        .enumerate()
        {
            queue.push_at(p, i, now);
        }
        let order: Vec<usize> = std::iter::from_fn(|| queue.pop_at(now)).collect();
        assert_eq!(order, vec![2, 5, 3, 1, 4, 0]);
    }

    #[test]
    fn low_priority_ages_past_fresh_critical_work() {
        let start = Instant::now();
        let aging = Duration::from_secs(1);
        let mut queue = WaitQueue::new(aging);
        queue.push_at(Priority::Low, "low", start);

        // Critical work keeps arriving; the low command must still get its turn.
        let mut taken = Vec::new();
        for step in 1..=6u32 {
            let now = start + aging * step;
            queue.push_at(Priority::Critical, "critical", now);
            taken.push(queue.pop_at(now).unwrap());
        }
        assert!(taken.contains(&"low"), "{taken:?}");
        assert_eq!(taken.iter().position(|t| *t == "low"), Some(2));
    }

    #[test]
    fn drain_returns_everything_oldest_first() {
        let mut queue = WaitQueue::new(Duration::ZERO);
        queue.push(Priority::Low, 1);
        queue.push(Priority::Critical, 2);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.drain(), vec![1, 2]);
        assert!(queue.pop().is_none());
    }
}
