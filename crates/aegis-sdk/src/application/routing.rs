//! Calls routed through discovery: choose an instance, then deliver the call to that
//! instance only, on its own subject `rpc.{service}.{method}.{instance}`.
//!
//! Every service instance of this SDK answers there besides its queue group, so the
//! chosen instance really is the one that handles the call (a sticky choice sticks).
//! Python instances do not listen on instance subjects; call them with
//! [`Client::call`] as before.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::Client;
use super::discovery::CachedDiscovery;
use super::selection::{SelectionStrategy, Selector};
use crate::domain::instance::ServiceInstance;
use crate::error::{Error, ErrorKind, Result};

/// Makes calls to the instance a [`SelectionStrategy`] picks among the healthy ones.
/// Cheap to clone; clones share the selection state.
///
/// # Examples
/// ```no_run
/// # async fn run(client: aegis_sdk::Client) -> aegis_sdk::Result<()> {
/// use aegis_sdk::application::discovery::Discovery;
/// use aegis_sdk::application::routing::Router;
/// use aegis_sdk::application::selection::SelectionStrategy;
/// use serde_json::{json, Value};
///
/// let cache = Discovery::open(&client).await?.cached(&client).await?;
/// let router = Router::new(&client, cache, SelectionStrategy::Sticky);
/// let reply: Value = router.call("echo-service", "echo", json!({"message": "hi"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Router {
    client: Client,
    discovery: CachedDiscovery,
    selector: Arc<Selector>,
}

impl Router {
    /// A router over `discovery`, calling through `client`.
    pub fn new(client: &Client, discovery: CachedDiscovery, strategy: SelectionStrategy) -> Self {
        Router {
            client: client.clone(),
            discovery,
            selector: Arc::new(Selector::new(strategy)),
        }
    }

    /// The discovery cache.
    pub fn discovery(&self) -> &CachedDiscovery {
        &self.discovery
    }

    /// The selection state (to [`prefer`](Selector::prefer) a sticky instance, say).
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Chooses an instance of `service` without calling it.
    ///
    /// # Errors
    /// [`ErrorKind::NoResponders`] when no instance is healthy.
    pub fn select(&self, service: &str) -> Result<ServiceInstance> {
        self.discovery
            .candidates(service, |candidates| {
                self.selector
                    .select(service, candidates)
                    .map(|(instance, _)| instance.clone())
            })
            .ok_or_else(|| no_instance(service))
    }

    /// Calls `method` of the instance of `service` chosen by the strategy, with the
    /// client's default timeout. When nobody answers on the chosen instance's subject
    /// (it died and its entry has not expired yet), the call goes to another one.
    ///
    /// # Errors
    /// [`ErrorKind::NoResponders`] when no instance is healthy; otherwise as
    /// [`Client::call`].
    pub async fn call<P, R>(&self, service: &str, method: &str, params: P) -> Result<R>
    where
        P: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.call_inner(service, method, params, None).await
    }

    /// [`Router::call`] with its own timeout.
    ///
    /// # Errors
    /// As [`Router::call`].
    pub async fn call_with_timeout<P, R>(
        &self,
        service: &str,
        method: &str,
        params: P,
        timeout: Duration,
    ) -> Result<R>
    where
        P: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.call_inner(service, method, params, Some(timeout))
            .await
    }

    async fn call_inner<P, R>(
        &self,
        service: &str,
        method: &str,
        params: P,
        timeout: Option<Duration>,
    ) -> Result<R>
    where
        P: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        // A bad name is the caller's mistake, not a missing instance.
        crate::domain::ServiceName::new(service)?;
        crate::domain::MethodName::new(method)?;

        // Encode once: the params move into the first call, later attempts reuse the
        // value.
        let params = serde_json::to_value(params)
            .map_err(|e| Error::new(ErrorKind::Encode, format!("cannot encode params: {e}")))?;
        let mut tried: Vec<String> = Vec::new();
        loop {
            let (instance, in_flight) = self
                .discovery
                .candidates(service, |candidates| {
                    let untried: Vec<_> = candidates
                        .iter()
                        .copied()
                        .filter(|c| !tried.contains(&c.instance_id))
                        .collect();
                    self.selector
                        .select(service, &untried)
                        .map(|(instance, guard)| (instance.instance_id.clone(), guard))
                })
                .ok_or_else(|| no_instance(service))?;

            tracing::trace!(%service, %method, %instance, "routed call");
            let mut call = self
                .client
                .call::<_, R>(service, method, params.clone())
                .instance(instance.clone());
            if let Some(timeout) = timeout {
                call = call.timeout(timeout);
            }
            let result = call.await;
            drop(in_flight);

            // Nobody listens on the instance's subject: it died and its entry has not
            // expired yet. Nothing was delivered, so another instance may take the call.
            match result {
                Err(e) if e.kind() == ErrorKind::NoResponders => {
                    tracing::debug!(%service, %instance, "chosen instance is gone; choosing again");
                    tried.push(instance);
                }
                other => return other,
            }
        }
    }
}

fn no_instance(service: &str) -> Error {
    Error::new(
        ErrorKind::NoResponders,
        format!("no healthy instance of service {service} is registered"),
    )
}
