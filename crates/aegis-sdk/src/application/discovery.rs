//! Discovery: which instances of a service exist, read from the registry.
//!
//! [`Discovery`] asks the registry each time. [`CachedDiscovery`] keeps every entry in
//! memory and applies the registry's changes as a KV watch delivers them (a new,
//! changed or vanished instance is visible as soon as its change arrives; nothing
//! polls). While the connection is down it keeps serving what it knew and says so
//! through [`CachedDiscovery::registry_reachable`]; the watch resumes from the last
//! revision it saw once NATS is back, and the cache is compared with a fresh listing to
//! drop entries that expired while it could not hear of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::client::Client;
use super::kv::Kv;
use super::registry::{ServiceRegistry, INSTANCE_KEY_PREFIX};
use crate::domain::instance::ServiceInstance;
use crate::domain::ServiceName;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::kv::{KvChange, KvOperation, KvWatch};
use crate::ports::ConnectionEvent;

/// How long a listing or a cache waits for the registry's current entries.
const INITIAL_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Lists instances by asking the registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Discovery {
    registry: ServiceRegistry,
    stale_after: Duration,
}

impl Discovery {
    /// An entry whose heartbeat is older than this is stale (default 30 s, as Python
    /// peers judge it; entries with a server-side TTL vanish earlier anyway).
    pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);

    /// Discovery over `registry`.
    pub fn new(registry: ServiceRegistry) -> Self {
        Discovery {
            registry,
            stale_after: Self::DEFAULT_STALE_AFTER,
        }
    }

    /// Discovery over the registry on the client's backend (NATS KV, or in memory).
    ///
    /// # Errors
    /// As [`ServiceRegistry::open`].
    pub async fn open(client: &Client) -> Result<Self> {
        Ok(Discovery::new(ServiceRegistry::open(client).await?))
    }

    /// Sets the age after which an entry counts as stale.
    pub fn stale_after(mut self, age: Duration) -> Self {
        self.stale_after = age;
        self
    }

    /// The registered instances of `service`, by instance id; with `healthy_only`, just
    /// the ACTIVE or STANDBY ones that are not stale.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an invalid service name; store errors otherwise.
    pub async fn instances(
        &self,
        service: &str,
        healthy_only: bool,
    ) -> Result<Vec<ServiceInstance>> {
        let service = ServiceName::new(service)?;
        let mut instances = self.registry.list(&service).await?;
        if healthy_only {
            let now = Utc::now();
            instances.retain(|i| i.is_healthy(now, self.stale_after));
        }
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(instances)
    }

    /// Starts a cache of the whole registry, kept current by a watch. Returns once the
    /// current entries are loaded.
    ///
    /// # Errors
    /// Store errors when the watch cannot start; [`ErrorKind::Timeout`] when the current
    /// entries do not arrive within 5 s.
    pub async fn cached(&self, client: &Client) -> Result<CachedDiscovery> {
        CachedDiscovery::start(self, client).await
    }
}

/// A service's instances as cached: sorted by id, heartbeats parsed once.
#[derive(Default)]
struct ServiceView {
    instances: Vec<(ServiceInstance, Option<chrono::DateTime<Utc>>)>,
}

#[derive(Default)]
struct CacheState {
    /// service -> instance id -> (key, revision, entry)
    entries: HashMap<String, BTreeMap<String, (String, u64, ServiceInstance)>>,
    /// key -> service, for deletes and expiries, which carry no value.
    services_by_key: HashMap<String, String>,
    views: HashMap<String, Arc<ServiceView>>,
}

impl CacheState {
    fn apply(&mut self, change: KvChange) {
        let service = match change.operation {
            KvOperation::Put => match Kv::decode::<ServiceInstance>(&change.value) {
                Ok(instance) => {
                    let service = instance.service_name.clone();
                    if let Some(old) = self.services_by_key.get(&change.key) {
                        if *old != service {
                            let old = old.clone();
                            self.remove(&change.key, &old);
                        }
                    }
                    self.services_by_key
                        .insert(change.key.clone(), service.clone());
                    self.entries.entry(service.clone()).or_default().insert(
                        instance.instance_id.clone(),
                        (change.key, change.revision, instance),
                    );
                    service
                }
                Err(error) => {
                    tracing::debug!(key = %change.key, %error, "unreadable registry entry ignored");
                    return;
                }
            },
            _ => match self.services_by_key.remove(&change.key) {
                Some(service) => {
                    self.remove(&change.key, &service);
                    service
                }
                None => return,
            },
        };
        self.rebuild(&service);
    }

    /// Drops entries that were written at or before `watermark` and are not `live`:
    /// they vanished while we could not hear of it (an expiry marker lives only about a
    /// second, so a watch resuming after a longer outage may never see it).
    fn forget_missing(&mut self, live: &HashSet<String>, watermark: u64) -> bool {
        let missing: Vec<(String, String)> = self
            .entries
            .iter()
            .flat_map(|(service, instances)| {
                instances
                    .values()
                    .filter(|(key, revision, _)| *revision <= watermark && !live.contains(key))
                    .map(move |(key, _, _)| (key.clone(), service.clone()))
            })
            .collect();
        for (key, service) in &missing {
            self.services_by_key.remove(key);
            self.remove(key, service);
        }
        !missing.is_empty()
    }

    fn remove(&mut self, key: &str, service: &str) {
        if let Some(instances) = self.entries.get_mut(service) {
            instances.retain(|_, (k, _, _)| k != key);
        }
        self.rebuild(service);
    }

    fn rebuild(&mut self, service: &str) {
        let instances: Vec<_> = self
            .entries
            .get(service)
            .into_iter()
            .flat_map(|m| m.values())
            .map(|(_, _, i)| (i.clone(), i.last_heartbeat_at()))
            .collect();
        if instances.is_empty() {
            self.entries.remove(service);
            self.views.remove(service);
        } else {
            self.views
                .insert(service.to_owned(), Arc::new(ServiceView { instances }));
        }
    }
}

struct Shared {
    state: RwLock<CacheState>,
    reachable: AtomicBool,
    stale_after: Duration,
    /// Bumped after every applied change, for those who want to wait for one.
    version: watch::Sender<u64>,
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A registry cache kept current by a watch. Cheap to clone; the watch stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct CachedDiscovery {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for CachedDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDiscovery")
            .field("registry_reachable", &self.registry_reachable())
            .finish_non_exhaustive()
    }
}

impl CachedDiscovery {
    async fn start(discovery: &Discovery, client: &Client) -> Result<Self> {
        // Listen for connection changes before anything else, so no outage is missed.
        let events = client.connection_events();
        let mut watch = discovery.registry.watch().await?;
        let shared = Arc::new(Shared {
            state: RwLock::new(CacheState::default()),
            reachable: AtomicBool::new(true),
            stale_after: discovery.stale_after,
            version: watch::channel(0).0,
        });

        if !watch.current_at_start() {
            tokio::time::timeout(INITIAL_LOAD_TIMEOUT, load_current(&shared, &mut watch))
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        "registry entries did not arrive in time",
                    )
                })?;
        }
        let tasks = vec![
            tokio::spawn(follow(shared.clone(), watch)),
            tokio::spawn(track_connection(
                shared.clone(),
                discovery.registry.clone(),
                events,
            )),
        ];
        Ok(CachedDiscovery {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        })
    }

    /// Whether the registry could be reached the last time we knew. When false, the
    /// answers are the last known ones.
    pub fn registry_reachable(&self) -> bool {
        self.shared.reachable.load(Ordering::Relaxed)
    }

    /// A receiver whose value changes after every change applied to the cache.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }

    /// The cached instances of `service`, by instance id; with `healthy_only`, just the
    /// ACTIVE or STANDBY ones that are not stale.
    pub fn instances(&self, service: &str, healthy_only: bool) -> Vec<ServiceInstance> {
        let now = Utc::now();
        self.with_instances(service, |instances| {
            instances
                .iter()
                .filter(|(i, at)| !healthy_only || healthy(i, *at, now, self.shared.stale_after))
                .map(|(i, _)| i.clone())
                .collect()
        })
    }

    /// The healthy instances of `service` to choose from: the ACTIVE ones, or the
    /// STANDBY ones when none is ACTIVE. Sorted by id.
    pub(crate) fn candidates<T>(
        &self,
        service: &str,
        choose: impl FnOnce(&[&ServiceInstance]) -> T,
    ) -> T {
        let now = Utc::now();
        let stale_after = self.shared.stale_after;
        self.with_instances(service, |instances| {
            let mut healthy_ones: Vec<&ServiceInstance> = instances
                .iter()
                .filter(|(i, at)| healthy(i, *at, now, stale_after))
                .map(|(i, _)| i)
                .collect();
            if healthy_ones
                .iter()
                .any(|i| i.status == crate::domain::instance::InstanceStatus::Active)
            {
                healthy_ones
                    .retain(|i| i.status == crate::domain::instance::InstanceStatus::Active);
            }
            choose(&healthy_ones)
        })
    }

    fn with_instances<T>(
        &self,
        service: &str,
        read: impl FnOnce(&[(ServiceInstance, Option<chrono::DateTime<Utc>>)]) -> T,
    ) -> T {
        let view = {
            let state = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
            state.views.get(service).cloned()
        };
        match view {
            Some(view) => read(&view.instances),
            None => read(&[]),
        }
    }
}

fn healthy(
    instance: &ServiceInstance,
    heartbeat: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
    stale_after: Duration,
) -> bool {
    instance.status.is_serving()
        && heartbeat.is_some_and(|at| (now - at).to_std().map_or(true, |age| age <= stale_after))
}

fn apply(shared: &Shared, change: KvChange) {
    shared
        .state
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .apply(change);
    shared.version.send_modify(|v| *v += 1);
}

/// Applies the watch's current entries, up to the one after which nothing was pending.
async fn load_current(shared: &Shared, watch: &mut KvWatch) {
    while let Some(change) = watch.next().await {
        let done = change.pending == 0;
        apply(shared, change);
        if done {
            return;
        }
    }
}

async fn follow(shared: Arc<Shared>, mut watch: KvWatch) {
    while let Some(change) = watch.next().await {
        // A change arriving proves the registry is reachable again.
        shared.reachable.store(true, Ordering::Relaxed);
        apply(&shared, change);
    }
}

/// Compares the cache with the registry after an outage; see
/// [`CacheState::forget_missing`].
async fn resync(shared: &Shared, registry: &ServiceRegistry) -> Result<()> {
    // The watermark first: whatever the listing misses and we cached at or below it is
    // gone; anything newer may have arrived through the watch after the listing.
    let watermark = registry.store().status().await?.last_revision;
    let live: HashSet<String> = registry
        .store()
        .keys(INSTANCE_KEY_PREFIX)
        .await?
        .into_iter()
        .collect();
    let changed = shared
        .state
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .forget_missing(&live, watermark);
    if changed {
        shared.version.send_modify(|v| *v += 1);
    }
    Ok(())
}

async fn track_connection(
    shared: Arc<Shared>,
    registry: ServiceRegistry,
    mut events: broadcast::Receiver<ConnectionEvent>,
) {
    loop {
        match events.recv().await {
            Ok(ConnectionEvent::Connected) => {
                shared.reachable.store(true, Ordering::Relaxed);
                if let Err(error) = resync(&shared, &registry).await {
                    tracing::debug!(%error, "registry resync after reconnect failed");
                }
            }
            Ok(ConnectionEvent::Disconnected | ConnectionEvent::Closed) => {
                tracing::debug!("registry unreachable; serving the last known instances");
                shared.reachable.store(false, Ordering::Relaxed);
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::instance::instance_key;
    use crate::domain::InstanceId;
    use bytes::Bytes;

    fn put(state: &mut CacheState, service: &str, id: &str, revision: u64) {
        let (service, id) = (
            ServiceName::new(service).unwrap(),
            InstanceId::new(id).unwrap(),
        );
        let entry = ServiceInstance::new(&service, &id, "1.0.0");
        state.apply(KvChange {
            key: instance_key(&service, &id),
            revision,
            operation: KvOperation::Put,
            value: Kv::encode(&entry).unwrap(),
            created: Utc::now(),
            pending: 0,
        });
    }

    fn listed(state: &CacheState, service: &str) -> Vec<String> {
        state
            .views
            .get(service)
            .map(|v| {
                v.instances
                    .iter()
                    .map(|(i, _)| i.instance_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn changes_add_update_and_remove_instances() {
        let mut state = CacheState::default();
        put(&mut state, "a", "a-1", 1);
        put(&mut state, "a", "a-2", 2);
        put(&mut state, "b", "b-1", 3);
        assert_eq!(listed(&state, "a"), vec!["a-1", "a-2"]);

        for operation in [KvOperation::Expired, KvOperation::Delete] {
            state.apply(KvChange {
                key: "service-instances__a__a-1".into(),
                revision: 4,
                operation,
                value: Bytes::new(),
                created: Utc::now(),
                pending: 0,
            });
        }
        assert_eq!(listed(&state, "a"), vec!["a-2"]);
        assert_eq!(listed(&state, "b"), vec!["b-1"]);
    }

    #[test]
    fn resync_forgets_only_old_entries_missing_from_the_listing() {
        let mut state = CacheState::default();
        put(&mut state, "a", "a-1", 1);
        put(&mut state, "a", "a-2", 2);
        put(&mut state, "a", "a-3", 9);
        // Listed at watermark 5: a-1 is live, a-2 vanished, a-3 was written later.
        let live = HashSet::from(["service-instances__a__a-1".to_owned()]);
        assert!(state.forget_missing(&live, 5));
        assert_eq!(listed(&state, "a"), vec!["a-1", "a-3"]);
        assert!(!state.forget_missing(&live, 5));
    }
}
