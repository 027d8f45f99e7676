//! Keeping a service instance registered: register on start, heartbeat, deregister on
//! stop.
//!
//! The entry carries a server-side TTL, refreshed by every heartbeat, so an instance
//! that dies without stopping disappears on its own once the TTL runs out. A heartbeat
//! that fails is retried with backoff until NATS is back; each heartbeat is a plain put,
//! so an entry that vanished (deleted by hand, expired during an outage) is simply
//! written again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::component::{Component, ComponentContext, RunningComponent};
use super::metrics::OpKind;
use super::registry::ServiceRegistry;
use super::service::ServiceBuilder;
use crate::domain::envelope::now_timestamp;
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::error::{Error, Result};

/// How an instance registers itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryOptions {
    /// Time between heartbeats (default 5 s).
    pub heartbeat_interval: Duration,
    /// Server-side time-to-live of the entry, refreshed by each heartbeat (default 15 s;
    /// at least 1 s and longer than the heartbeat interval).
    pub ttl: Duration,
    /// The status announced at start (default ACTIVE).
    pub initial_status: InstanceStatus,
    /// Extra metadata, merged over the SDK's own (host, pid, startedAt, methods,
    /// subscriptions, heartbeatIntervalSeconds).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            heartbeat_interval: Duration::from_secs(5),
            ttl: Duration::from_secs(15),
            initial_status: InstanceStatus::Active,
            metadata: serde_json::Map::new(),
        }
    }
}

impl RegistryOptions {
    /// Sets the heartbeat interval.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the entry's time-to-live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the status announced at start.
    pub fn initial_status(mut self, status: InstanceStatus) -> Self {
        self.initial_status = status;
        self
    }

    /// Adds a metadata field.
    pub fn metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    fn check(&self) -> Result<()> {
        if self.ttl < Duration::from_secs(1) {
            return Err(Error::invalid_argument("registry TTL must be at least 1 s"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.ttl {
            return Err(Error::invalid_argument(
                "registry heartbeat interval must be > 0 and shorter than the TTL",
            ));
        }
        Ok(())
    }
}

/// What the handle changes, seen by the heartbeat task.
#[derive(Debug, Clone, PartialEq)]
struct Announced {
    status: InstanceStatus,
    sticky_active_group: Option<String>,
    sticky_active_status: Option<String>,
}

/// The registry component of a service. Add it with
/// [`ServiceBuilder::with_registration`] (or [`ServiceBuilder::with_registry`] when no
/// handle is needed); keep a [`Registration::handle`] to change the status later.
///
/// # Examples
/// ```no_run
/// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
/// use aegis_sdk::application::registration::{Registration, RegistryOptions};
/// use aegis_sdk::domain::instance::InstanceStatus;
/// use aegis_sdk::Service;
///
/// let registration = Registration::new(RegistryOptions::default());
/// let handle = registration.handle();
/// let service = Service::builder("orders").with_registration(registration).build()?;
/// service.start(&client).await?;
/// handle.set_status(InstanceStatus::Unhealthy);
/// # Ok(()) }
/// ```
pub struct Registration {
    options: RegistryOptions,
    handle: RegistrationHandle,
}

/// Changes what a running registration announces. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RegistrationHandle {
    announced: Arc<watch::Sender<Announced>>,
}

impl RegistrationHandle {
    /// Announces `status`; written at once (not at the next heartbeat) when running.
    pub fn set_status(&self, status: InstanceStatus) {
        self.announced.send_modify(|a| a.status = status);
    }

    /// The status being announced.
    pub fn status(&self) -> InstanceStatus {
        self.announced.borrow().status
    }

    /// Announces the instance's single-active group and role (`ACTIVE`, `STANDBY`,
    /// `ELECTING`); written at once when running.
    pub fn set_sticky_active(&self, group: Option<String>, status: Option<String>) {
        self.announced.send_modify(|a| {
            a.sticky_active_group = group;
            a.sticky_active_status = status;
        });
    }
}

impl Registration {
    /// A registration with `options`.
    pub fn new(options: RegistryOptions) -> Self {
        let (announced, _) = watch::channel(Announced {
            status: options.initial_status,
            sticky_active_group: None,
            sticky_active_status: None,
        });
        Registration {
            options,
            handle: RegistrationHandle {
                announced: Arc::new(announced),
            },
        }
    }

    /// A handle to change the announced status.
    pub fn handle(&self) -> RegistrationHandle {
        self.handle.clone()
    }
}

impl ServiceBuilder {
    /// Registers the service in the registry while it runs, with `options`.
    pub fn with_registry(self, options: RegistryOptions) -> Self {
        self.with_registration(Registration::new(options))
    }

    /// Adds `registration` (made with [`Registration::new`], whose handle you kept).
    pub fn with_registration(mut self, registration: Registration) -> Self {
        match registration.options.check() {
            Ok(()) => {
                // A single-active service records its role here too.
                self.registration = Some(registration.handle());
                self.component(registration)
            }
            Err(error) => self.invalid(error),
        }
    }
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[async_trait]
impl Component for Registration {
    fn describe(&self) -> String {
        format!(
            "registry heartbeat {:?} ttl {:?}",
            self.options.heartbeat_interval, self.options.ttl
        )
    }

    async fn start(&self, context: &ComponentContext) -> Result<Box<dyn RunningComponent>> {
        let registry = ServiceRegistry::open(context.client()).await?;
        let ttl = if registry.ttl_enabled().await? {
            Some(self.options.ttl)
        } else {
            tracing::warn!(
                "registry bucket has no per-key TTL; entries of dead instances only go stale"
            );
            None
        };

        let mut entry =
            ServiceInstance::new(context.service(), context.instance_id(), context.version());
        let mut metadata = serde_json::Map::new();
        metadata.insert("host".into(), host_name().into());
        metadata.insert("pid".into(), std::process::id().into());
        metadata.insert("startedAt".into(), now_timestamp().into());
        metadata.insert("methods".into(), context.methods().into());
        metadata.insert("subscriptions".into(), context.descriptions().into());
        // Lets readers tell a live entry from one whose heartbeats stopped.
        metadata.insert(
            "heartbeatIntervalSeconds".into(),
            self.options.heartbeat_interval.as_secs_f64().into(),
        );
        metadata.extend(self.options.metadata.clone());
        entry.metadata = metadata;

        let mut heartbeat = Heartbeat {
            registry,
            entry,
            ttl,
            interval: self.options.heartbeat_interval,
            announced: self.handle.announced.subscribe(),
        };
        // The first write happens before start returns: a started service is findable.
        heartbeat.write().await?;
        tracing::info!(service = %context.service(), instance = %context.instance_id(), "registered");

        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(heartbeat.run(stop_rx));
        Ok(Box::new(RunningRegistration {
            stop,
            task: Some(task),
        }))
    }
}

struct Heartbeat {
    registry: ServiceRegistry,
    entry: ServiceInstance,
    ttl: Option<Duration>,
    interval: Duration,
    announced: watch::Receiver<Announced>,
}

impl Heartbeat {
    async fn write(&mut self) -> Result<u64> {
        let announced = self.announced.borrow_and_update().clone();
        self.entry.status = announced.status;
        self.entry.sticky_active_group = announced.sticky_active_group;
        self.entry.sticky_active_status = announced.sticky_active_status;
        self.entry.last_heartbeat = now_timestamp();
        let labels = [self.entry.service_name.as_str()];
        let write = self.registry.register(&self.entry, self.ttl);
        super::metrics::timed(OpKind::RegistryHeartbeat, &labels, write).await
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut next = super::clock::after(self.interval);
        let mut failures: u32 = 0;
        let mut handle_alive = true;
        loop {
            // Three things can happen: the service stops, the handle announces a new
            // status (written at once so others see it quickly), or the heartbeat is due.
            tokio::select! {
                _ = stop.changed() => break,
                changed = self.announced.changed(), if handle_alive => {
                    // Without a handle, keep heartbeating the last status.
                    handle_alive = changed.is_ok();
                }
                _ = tokio::time::sleep_until(next) => {}
            }

            match self.write().await {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(instance = %self.entry.instance_id, failures, "registry heartbeat recovered");
                    }
                    failures = 0;
                    next = super::clock::after(self.interval);
                }
                Err(error) => {
                    failures += 1;
                    // Retry sooner than the interval, so the entry is back soon after
                    // NATS is, but back off while it is not.
                    let backoff = Duration::from_millis(100)
                        .saturating_mul(1 << failures.min(6))
                        .min(self.interval);
                    tracing::debug!(instance = %self.entry.instance_id, %error, failures, ?backoff, "registry heartbeat failed");
                    next = Instant::now() + backoff;
                }
            }
        }

        self.deregister().await;
    }

    async fn deregister(&self) {
        let service = crate::domain::ServiceName::new(self.entry.service_name.as_str());
        let instance = crate::domain::InstanceId::new(self.entry.instance_id.as_str());
        let (Ok(service), Ok(instance)) = (service, instance) else {
            return;
        };
        let deleted = tokio::time::timeout(
            Duration::from_secs(2),
            self.registry.deregister(&service, &instance),
        )
        .await;
        match deleted {
            Ok(Ok(())) => tracing::info!(%service, %instance, "deregistered"),
            Ok(Err(error)) => {
                tracing::debug!(%service, %instance, %error, "deregistration failed; the entry will expire")
            }
            Err(_) => {
                tracing::debug!(%service, %instance, "deregistration timed out; the entry will expire")
            }
        }
    }
}

struct RunningRegistration {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for RunningRegistration {
    fn drop(&mut self) {
        // Dropped without `stop` (the service was dropped while running): stop
        // heartbeating and let the entry expire, as if the process had died.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[async_trait]
impl RunningComponent for RunningRegistration {
    async fn stop(mut self: Box<Self>, drain_timeout: Duration) {
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else {
            return;
        };
        // Deregistration has its own deadline; this one only guards against a stuck task.
        if tokio::time::timeout(drain_timeout.max(Duration::from_secs(3)), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
