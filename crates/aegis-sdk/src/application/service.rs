//! A service: named handlers served by one instance, with a start/stop lifecycle.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::task::JoinHandle;

use super::client::Client;
use super::component::{Component, ComponentContext, RunningComponent};
use super::context::{HandlerError, InstanceInfo, RpcContext};
use super::dispatch::{Dispatcher, MethodFrom};
use super::election::{ElectionSetup, ExclusiveGate, Leadership};
use super::handler::{RpcHandler, TypedHandler};
use super::health::{HealthSource, HEALTH_METHOD};
use super::micro::{self, Endpoints};
use crate::domain::instance::is_semver;
use crate::domain::{subjects, Encoding, InstanceId, MethodName, ServiceName};
use crate::error::{Error, ErrorKind, Result};

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceState {
    /// Built, not started.
    Initializing,
    /// Subscribing and running start hooks.
    Starting,
    /// Serving requests.
    Started,
    /// Draining in-flight work.
    Stopping,
    /// Stopped; nothing of it runs.
    Stopped,
    /// Start failed; see the error `start` returned.
    Failed,
}

type Hook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Builds a [`Service`]. Names are checked by [`ServiceBuilder::build`], which reports
/// the first invalid one.
#[must_use]
pub struct ServiceBuilder {
    name: String,
    version: String,
    instance_id: Option<String>,
    encoding: Encoding,
    max_concurrency: usize,
    drain_timeout: Duration,
    handlers: Vec<(String, Arc<dyn RpcHandler>)>,
    components: Vec<Arc<dyn Component>>,
    on_start: Vec<Hook>,
    on_stop: Vec<Hook>,
    errors: Vec<Error>,
    pub(crate) election: Option<ElectionSetup>,
    pub(crate) registration: Option<super::registration::RegistrationHandle>,
}

impl ServiceBuilder {
    /// Adds a component (event subscription, command worker, registry, election...).
    /// Components start in the order added, after the RPC handlers, and stop in reverse.
    pub fn component(mut self, component: impl Component) -> Self {
        self.components.push(Arc::new(component));
        self
    }

    /// Records a configuration error to report from [`ServiceBuilder::build`], for
    /// builder methods that cannot fail on the spot.
    pub fn invalid(mut self, error: Error) -> Self {
        self.errors.push(error);
        self
    }

    /// The default limit of handlers running at once.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;
    /// The default time `stop` waits for running handlers.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

    /// The version announced by the service (default `1.0.0`): a semantic version
    /// (`MAJOR.MINOR.PATCH[-pre-release][+build]`, see
    /// [`crate::domain::instance::is_semver`]), as the registry and the NATS
    /// service API require; [`build`](Self::build) rejects any other.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The instance id (default `{service}-{8 hex digits}`).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// The encoding of replies and outgoing messages (default MessagePack).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// How many handlers may run at once (default
    /// [`DEFAULT_MAX_CONCURRENCY`](Self::DEFAULT_MAX_CONCURRENCY)); further requests
    /// wait, in order, and one whose caller's timeout passes while it waits does not run
    /// (its reply is a `TIMEOUT` failure). At least 1.
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// How long `stop` waits for running handlers before aborting them (default
    /// [`DEFAULT_DRAIN_TIMEOUT`](Self::DEFAULT_DRAIN_TIMEOUT)). Requests received before
    /// the stop still run, within the concurrency limit; when the drain timeout passes,
    /// the callers of handlers aborted and of requests never started get a
    /// `SERVICE_UNAVAILABLE` failure at once. `Duration::MAX` waits without limit.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Registers an RPC method handled by an async function of the request context and
    /// typed parameters, returning a typed result. Use `serde_json::Value` for untyped
    /// parameters or results.
    ///
    /// # Examples
    /// ```
    /// use aegis_sdk::{HandlerError, RpcContext, Service};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct Add { a: i64, b: i64 }
    /// #[derive(Serialize)]
    /// struct Sum { sum: i64 }
    ///
    /// let service = Service::builder("calculator")
    ///     .rpc("add", |_ctx: RpcContext, p: Add| async move {
    ///         Ok::<_, HandlerError>(Sum { sum: p.a + p.b })
    ///     })
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(service.methods(), vec!["add"]);
    /// ```
    pub fn rpc<F, Fut, P, R>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        F: Fn(RpcContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.handlers
            .push((method.into(), Arc::new(TypedHandler::new(handler))));
        self
    }

    /// Runs `hook` when the service starts, after it subscribed. A failing hook fails
    /// the start.
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.on_start.push(Arc::new(move || hook().boxed()));
        self
    }

    /// Runs `hook` when the service stops, after in-flight work drained.
    pub fn on_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.on_stop.push(Arc::new(move || hook().boxed()));
        self
    }

    /// Checks every name and builds the service.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an invalid service, instance or method name;
    /// [`ErrorKind::InvalidArgument`] for a method registered twice or a version that
    /// is not a semantic version.
    pub fn build(mut self) -> Result<Service> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        let service = ServiceName::new(self.name)?;
        if !is_semver(&self.version) {
            return Err(Error::invalid_argument(format!(
                "version {:?} of service {service} is not a semantic version \
                 (MAJOR.MINOR.PATCH, optionally -pre-release and +build, as `2.1.0-rc.1`)",
                self.version
            )));
        }
        let instance_id = match self.instance_id {
            Some(id) => InstanceId::new(id)?,
            None => InstanceId::generate(&service),
        };
        let mut handlers = HashMap::new();
        for (method, handler) in self.handlers {
            let method = MethodName::new(method)?;
            let key: Arc<str> = Arc::from(method.as_str());
            if handlers.insert(key, handler).is_some() {
                return Err(Error::invalid_argument(format!(
                    "method {method} is registered twice"
                )));
            }
        }
        let exclusive = match self.election {
            Some(setup) => {
                let (component, gate) = setup.finish()?;
                self.components.push(component);
                if let Some(registration) = self.registration.take() {
                    self.components
                        .push(Arc::new(super::election::AnnounceLeadership {
                            leadership: gate.leadership.clone(),
                            registration,
                        }));
                }
                Some(Arc::new(gate))
            }
            None => None,
        };
        let (state, state_rx) = watch::channel(ServiceState::Initializing);
        let health = Arc::new(HealthSource {
            state: state_rx,
            started: std::sync::Mutex::new(None),
            leadership: exclusive.as_ref().map(|gate| gate.leadership.clone()),
        });
        // A method of the user's called `health` replaces the built-in one.
        let builtin_health =
            (!handlers.contains_key(HEALTH_METHOD)).then(|| super::health::handler(health.clone()));
        Ok(Service {
            inner: Arc::new(ServiceInner {
                info: Arc::new(InstanceInfo {
                    service,
                    instance_id,
                    version: self.version,
                }),
                encoding: self.encoding,
                max_concurrency: self.max_concurrency,
                drain_timeout: self.drain_timeout,
                handlers,
                builtin_health,
                health,
                components: self.components,
                exclusive,
                on_start: self.on_start,
                on_stop: self.on_stop,
                state,
                running: Mutex::new(None),
            }),
        })
    }
}

/// A service instance: RPC handlers served on `rpc.{service}.{method}` in queue group
/// `rpc.{service}`, and on `rpc.{service}.{method}.{instance}` for calls routed to this
/// instance.
///
/// Cheap to clone; clones control the same instance.
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    info: Arc<InstanceInfo>,
    encoding: Encoding,
    max_concurrency: usize,
    drain_timeout: Duration,
    handlers: HashMap<Arc<str>, Arc<dyn RpcHandler>>,
    /// The built-in `health` method, unless the user registered one.
    builtin_health: Option<Arc<dyn RpcHandler>>,
    health: Arc<HealthSource>,
    components: Vec<Arc<dyn Component>>,
    exclusive: Option<Arc<ExclusiveGate>>,
    on_start: Vec<Hook>,
    on_stop: Vec<Hook>,
    state: watch::Sender<ServiceState>,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    components: Vec<Box<dyn RunningComponent>>,
    transport: Arc<dyn crate::ports::Transport>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.inner.info.service)
            .field("instance_id", &self.inner.info.instance_id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts building a service called `name`.
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            version: "1.0.0".to_owned(),
            instance_id: None,
            encoding: Encoding::default(),
            max_concurrency: ServiceBuilder::DEFAULT_MAX_CONCURRENCY,
            drain_timeout: ServiceBuilder::DEFAULT_DRAIN_TIMEOUT,
            handlers: Vec::new(),
            components: Vec::new(),
            on_start: Vec::new(),
            on_stop: Vec::new(),
            errors: Vec::new(),
            election: None,
            registration: None,
        }
    }

    /// The service name.
    pub fn name(&self) -> &ServiceName {
        &self.inner.info.service
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.inner.info.instance_id
    }

    /// The version it announces.
    pub fn version(&self) -> &str {
        &self.inner.info.version
    }

    /// The registered RPC method names, sorted. The built-in
    /// [`health`](super::health) method, served beside them, is not listed.
    pub fn methods(&self) -> Vec<&str> {
        let mut methods: Vec<&str> = self.inner.handlers.keys().map(|m| &**m).collect();
        methods.sort_unstable();
        methods
    }

    /// The instance's leadership of its single-active group, if the service runs in
    /// single-active mode: its role, fencing token and leadership events.
    pub fn leadership(&self) -> Option<&Leadership> {
        self.inner.exclusive.as_ref().map(|gate| &gate.leadership)
    }

    /// The current state.
    pub fn state(&self) -> ServiceState {
        *self.inner.state.borrow()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<ServiceState> {
        self.inner.state.subscribe()
    }

    /// Subscribes every method and runs the start hooks.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when already started;
    /// [`ErrorKind::Connection`] when a subscription fails; [`ErrorKind::Internal`] when
    /// a start hook fails. The state is then [`ServiceState::Failed`] and nothing of the
    /// service keeps running.
    pub async fn start(&self, client: &Client) -> Result<()> {
        let mut running = self.inner.running.lock().await;
        if running.is_some() {
            return Err(Error::invalid_argument(format!(
                "service {} is already started",
                self.name()
            )));
        }
        self.inner.state.send_replace(ServiceState::Starting);

        match self.launch(client).await {
            Ok(started) => {
                *running = Some(started);
                self.inner.health.mark_started();
                self.inner.state.send_replace(ServiceState::Started);
                tracing::info!(service = %self.name(), instance = %self.instance_id(), "service started");
                Ok(())
            }
            Err(error) => {
                self.inner.state.send_replace(ServiceState::Failed);
                tracing::warn!(service = %self.name(), %error, "service failed to start");
                Err(error)
            }
        }
    }

    async fn launch(&self, client: &Client) -> Result<Running> {
        let info = &self.inner.info;
        let client = client.with_source(info.instance_id.as_str());
        let transport = client.transport().clone();
        let mut handlers = self.inner.handlers.clone();
        if let Some(health) = &self.inner.builtin_health {
            handlers.insert(Arc::from(HEALTH_METHOD), health.clone());
        }
        let endpoints = Arc::new(Endpoints::new(info.clone(), handlers.keys()));
        let dispatcher = Arc::new(Dispatcher {
            instance: info.clone(),
            client,
            handlers,
            encoding: self.inner.encoding,
            permits: Arc::new(Semaphore::new(self.inner.max_concurrency)),
            exclusive: self.inner.exclusive.clone(),
            endpoints: endpoints.clone(),
            aborted: std::sync::Mutex::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut loops = Vec::new();

        let mut subscriptions = Vec::new();
        let queue_group = subjects::rpc_queue_group(&info.service);
        for method in dispatcher.handlers.keys() {
            let subject = format!("rpc.{}.{}", info.service, method);
            let subscription = transport
                .subscribe(subject, Some(queue_group.clone()))
                .await;
            subscriptions.push((subscription, Some(method.clone()), MethodFrom::Fixed));
        }
        if !dispatcher.handlers.is_empty() {
            let subject = format!("rpc.{}.*.{}", info.service, info.instance_id);
            let subscription = transport.subscribe(subject, None).await;
            subscriptions.push((subscription, None, MethodFrom::ThirdToken));
        }
        for (subscription, method, from) in subscriptions {
            match subscription {
                Ok(subscription) => loops.push(tokio::spawn(dispatcher.clone().serve(
                    subscription,
                    method,
                    from,
                    stop_rx.clone(),
                    self.inner.drain_timeout,
                ))),
                Err(error) => {
                    abort_all(loops);
                    return Err(error);
                }
            }
        }
        // NATS tooling (`nats micro ls`) finds the instance through the service API.
        match micro::subscribe(&*transport, info).await {
            Ok(subscriptions) => loops.push(tokio::spawn(micro::serve(
                endpoints,
                transport.clone(),
                subscriptions,
                stop_rx.clone(),
            ))),
            Err(error) => {
                abort_all(loops);
                return Err(error);
            }
        }
        // Make sure the server knows our subscriptions before callers are told we run.
        if let Err(error) = transport.flush().await {
            abort_all(loops);
            return Err(error);
        }

        let mut running = Running {
            stop,
            loops,
            components: Vec::new(),
            transport,
        };
        let context = ComponentContext {
            instance: info.clone(),
            client: dispatcher.client.clone(),
            encoding: self.inner.encoding,
            methods: self.methods().into_iter().map(str::to_owned).collect(),
            descriptions: self.inner.components.iter().map(|c| c.describe()).collect(),
        };
        for component in &self.inner.components {
            match component.start(&context).await {
                Ok(started) => running.components.push(started),
                Err(error) => {
                    running.shutdown(Duration::from_secs(1)).await;
                    return Err(error);
                }
            }
        }

        for hook in &self.inner.on_start {
            if let Err(error) = hook().await {
                running.shutdown(Duration::from_secs(1)).await;
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("on_start hook failed: {}", error.to_wire()),
                ));
            }
        }
        Ok(running)
    }

    /// Stops taking requests, lets in-flight handlers finish (up to the drain timeout,
    /// then aborts them), runs the stop hooks, and returns when nothing of the service
    /// runs any more. Stopping a service that is not running does nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`] when a stop hook fails; the service is stopped anyway.
    pub async fn stop(&self) -> Result<()> {
        let Some(running) = self.inner.running.lock().await.take() else {
            return Ok(());
        };
        self.inner.state.send_replace(ServiceState::Stopping);
        running.shutdown(self.inner.drain_timeout).await;

        let mut failure = None;
        for hook in &self.inner.on_stop {
            if let Err(error) = hook().await {
                failure.get_or_insert(Error::new(
                    ErrorKind::Internal,
                    format!("on_stop hook failed: {}", error.to_wire()),
                ));
            }
        }
        self.inner.state.send_replace(ServiceState::Stopped);
        tracing::info!(service = %self.name(), instance = %self.instance_id(), "service stopped");
        failure.map_or(Ok(()), Err)
    }
}

impl Running {
    /// Stops components (newest first), then drains the RPC loops.
    async fn shutdown(mut self, drain_timeout: Duration) {
        while let Some(component) = self.components.pop() {
            component.stop(drain_timeout).await;
        }
        let _ = self.stop.send(true);
        for handle in self.loops.drain(..) {
            if let Err(error) = handle.await {
                tracing::warn!(%error, "rpc dispatch loop ended abnormally");
            }
        }
        // The last replies may still sit in the connection's write buffer; if this was
        // the last handle on the connection, they would be lost with it.
        if let Err(error) = self.transport.flush().await {
            tracing::debug!(%error, "flush after stop failed");
        }
    }
}

fn abort_all(loops: Vec<JoinHandle<()>>) {
    for handle in loops {
        handle.abort();
    }
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        // The last handle went away without `stop`: end the loops rather than leave them
        // serving a service nobody controls.
        if let Some(running) = self.running.get_mut().take() {
            let _ = running.stop.send(true);
            abort_all(running.loops);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_version_is_semver() {
        let service = Service::builder("versioned").build().unwrap();
        assert_eq!(service.version(), "1.0.0");
    }

    #[test]
    fn build_takes_semantic_versions_only() {
        for valid in [
            "2.1.0",
            "0.1.0-rc.1",
            "1.0.0+build.7",
            "3.0.0-beta.2+sha.5114f85",
        ] {
            let service = Service::builder("versioned")
                .version(valid)
                .build()
                .unwrap_or_else(|e| panic!("{valid}: {e}"));
            assert_eq!(service.version(), valid);
        }
        for invalid in [
            "v2", "2", "2.1", "", "1.0.0.0", "01.2.3", "1.0.0-", "latest",
        ] {
            let error = Service::builder("versioned")
                .version(invalid)
                .build()
                .err()
                .unwrap_or_else(|| panic!("{invalid:?} was accepted"));
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{invalid:?}");
            assert!(error.to_string().contains("semantic version"), "{error}");
        }
    }
}
