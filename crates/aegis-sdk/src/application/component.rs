//! Components: what runs inside a service beside its RPC handlers.
//!
//! Event subscriptions, command workers, the registry heartbeat and leader election
//! each plug into a [`Service`](super::Service) as a component. The service starts its
//! components in the order they were added, after its RPC subscriptions, and stops them
//! in reverse order before it drains its RPC handlers; a component that fails to start
//! fails the whole start, and those already started are stopped again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::client::Client;
use super::context::InstanceInfo;
use crate::domain::{Encoding, InstanceId, ServiceName};
use crate::error::Result;

/// What a component is given when its service starts.
#[derive(Clone)]
pub struct ComponentContext {
    pub(crate) instance: Arc<InstanceInfo>,
    pub(crate) client: Client,
    pub(crate) encoding: Encoding,
    pub(crate) methods: Vec<String>,
    pub(crate) descriptions: Vec<String>,
}

impl ComponentContext {
    /// The service name.
    pub fn service(&self) -> &ServiceName {
        &self.instance.service
    }

    /// The instance id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance.instance_id
    }

    /// The service version.
    pub fn version(&self) -> &str {
        &self.instance.version
    }

    /// A client on the service's connection, naming the instance as `source`.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The encoding the service uses for outgoing messages.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The service's RPC method names, sorted.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// One line per component of the service (`events order.* compete`, ...), for the
    /// registry's metadata.
    pub fn descriptions(&self) -> &[String] {
        &self.descriptions
    }
}

/// A part of a service with its own start and stop.
#[async_trait]
pub trait Component: Send + Sync + 'static {
    /// A one-line description (`events order.* compete`, `registry heartbeat 5s`).
    fn describe(&self) -> String;

    /// Starts the component.
    ///
    /// # Errors
    /// Whatever keeps it from running; the service's start then fails.
    async fn start(&self, context: &ComponentContext) -> Result<Box<dyn RunningComponent>>;
}

/// A started component.
#[async_trait]
pub trait RunningComponent: Send + 'static {
    /// Stops taking new work, lets work in progress finish until `drain_timeout` has
    /// passed, then aborts what is left. Returns when nothing of it runs any more.
    async fn stop(self: Box<Self>, drain_timeout: Duration);
}
