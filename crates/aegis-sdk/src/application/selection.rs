//! Choosing one instance of a service: round robin, random, sticky, least outstanding.
//!
//! Selection is pure bookkeeping over a list of candidates (healthy instances, sorted by
//! id); [`super::routing`] feeds it from the cached discovery and sends the call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::instance::ServiceInstance;

/// How a caller picks among the healthy instances of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SelectionStrategy {
    /// Each instance in turn. The default.
    #[default]
    RoundRobin,
    /// Any instance, uniformly at random.
    Random,
    /// Always the same instance while it stays healthy: the one named with
    /// [`Selector::prefer`], or else the first one chosen; when it goes, the next one
    /// becomes the sticky choice.
    Sticky,
    /// The instance with the fewest calls in flight from this caller.
    LeastOutstanding,
}

#[derive(Default)]
struct PerService {
    next: usize,
    sticky: Option<String>,
    outstanding: HashMap<String, Arc<AtomicUsize>>,
}

/// Selection state for every service one caller talks to.
pub struct Selector {
    strategy: SelectionStrategy,
    services: Mutex<HashMap<String, PerService>>,
    seed: AtomicU64,
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// Counts one call in flight to an instance until dropped.
#[derive(Debug)]
pub struct InFlight(Option<Arc<AtomicUsize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(counter) = &self.0 {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Selector {
    /// A selector using `strategy`.
    pub fn new(strategy: SelectionStrategy) -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        Selector {
            strategy,
            services: Mutex::new(HashMap::new()),
            seed: AtomicU64::new(seed),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> SelectionStrategy {
        self.strategy
    }

    /// Makes `instance` the sticky choice for `service` (used by
    /// [`SelectionStrategy::Sticky`] while it is healthy).
    pub fn prefer(&self, service: &str, instance: &str) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services.entry(service.to_owned()).or_default().sticky = Some(instance.to_owned());
    }

    /// Calls in flight from this selector to `instance` of `service`.
    pub fn outstanding(&self, service: &str, instance: &str) -> usize {
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services
            .get(service)
            .and_then(|s| s.outstanding.get(instance))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Picks one of `candidates` (healthy instances of `service`, sorted by id) and
    /// counts a call in flight to it until the returned guard is dropped.
    pub fn select<'a>(
        &self,
        service: &str,
        candidates: &[&'a ServiceInstance],
    ) -> Option<(&'a ServiceInstance, InFlight)> {
        if candidates.is_empty() {
            return None;
        }
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let state = match services.get_mut(service) {
            Some(state) => state,
            None => services.entry(service.to_owned()).or_default(),
        };
        let chosen = match self.strategy {
            SelectionStrategy::RoundRobin => {
                let i = state.next % candidates.len();
                state.next = state.next.wrapping_add(1);
                candidates[i]
            }
            SelectionStrategy::Random => {
                candidates[(self.random() % candidates.len() as u64) as usize]
            }
            SelectionStrategy::Sticky => {
                let current = state
                    .sticky
                    .as_deref()
                    .and_then(|id| candidates.iter().find(|c| c.instance_id == id));
                match current {
                    Some(instance) => instance,
                    None => {
                        let instance = candidates[0];
                        state.sticky = Some(instance.instance_id.clone());
                        instance
                    }
                }
            }
            SelectionStrategy::LeastOutstanding => {
                // Ties go round robin, so an idle service still spreads its calls.
                let start = state.next % candidates.len();
                state.next = state.next.wrapping_add(1);
                let load = |c: &ServiceInstance| {
                    state
                        .outstanding
                        .get(&c.instance_id)
                        .map_or(0, |n| n.load(Ordering::Relaxed))
                };
                (0..candidates.len())
                    .map(|k| candidates[(start + k) % candidates.len()])
                    .min_by_key(|c| load(c))
                    .unwrap_or(candidates[start])
            }
        };
        let in_flight = if self.strategy == SelectionStrategy::LeastOutstanding {
            let counter = match state.outstanding.get(&chosen.instance_id) {
                Some(counter) => counter.clone(),
                None => state
                    .outstanding
                    .entry(chosen.instance_id.clone())
                    .or_default()
                    .clone(),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            InFlight(Some(counter))
        } else {
            InFlight(None)
        };
        Some((chosen, in_flight))
    }

    /// xorshift64*: good enough to spread calls, no extra dependency.
    fn random(&self) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InstanceId, ServiceName};

    fn instances(n: usize) -> Vec<ServiceInstance> {
        let service = ServiceName::new("svc").unwrap();
        (0..n)
            .map(|i| {
                ServiceInstance::new(
                    &service,
                    &InstanceId::new(format!("svc-{i}")).unwrap(),
                    "1.0.0",
                )
            })
            .collect()
    }

    fn pick(selector: &Selector, list: &[ServiceInstance]) -> (String, InFlight) {
        let refs: Vec<&ServiceInstance> = list.iter().collect();
        let (chosen, guard) = selector.select("svc", &refs).unwrap();
        (chosen.instance_id.clone(), guard)
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let selector = Selector::new(SelectionStrategy::RoundRobin);
        let list = instances(3);
        let mut counts = HashMap::new();
        for _ in 0..300 {
            *counts.entry(pick(&selector, &list).0).or_insert(0) += 1;
        }
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![100; 3]);
    }

    #[test]
    fn sticky_sticks_and_moves() {
        let selector = Selector::new(SelectionStrategy::Sticky);
        let list = instances(3);
        selector.prefer("svc", "svc-2");
        for _ in 0..10 {
            assert_eq!(pick(&selector, &list).0, "svc-2");
        }
        let survivors = &list[..2];
        let moved = pick(&selector, survivors).0;
        for _ in 0..10 {
            assert_eq!(pick(&selector, &list).0, moved, "stays on the new choice");
        }
    }

    #[test]
    fn least_outstanding_avoids_busy_instances() {
        let selector = Selector::new(SelectionStrategy::LeastOutstanding);
        let list = instances(3);
        let (first, _busy) = pick(&selector, &list);
        let (second, _busy2) = pick(&selector, &list);
        let (third, _) = pick(&selector, &list);
        assert_ne!(first, second);
        assert_ne!(third, first);
        assert_ne!(third, second);
        assert_eq!(selector.outstanding("svc", &first), 1);
    }

    #[test]
    fn random_covers_all_and_empty_is_none() {
        let selector = Selector::new(SelectionStrategy::Random);
        let list = instances(3);
        let seen: std::collections::HashSet<String> =
            (0..200).map(|_| pick(&selector, &list).0).collect();
        assert_eq!(seen.len(), 3);
        assert!(selector.select("svc", &[]).is_none());
    }
}
