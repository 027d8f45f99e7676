//! The election as a service component, the gate exclusive methods pass, and the
//! builder methods that wire both in.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::elector::Elector;
use super::leadership::{Admission, Leadership};
use super::policy::FailoverPolicy;
use crate::application::component::{Component, ComponentContext, RunningComponent};
use crate::application::context::{HandlerError, InstanceInfo, RpcContext};
use crate::application::service::ServiceBuilder;
use crate::domain::election::{GroupName, DEFAULT_GROUP};
use crate::domain::error_code;
use crate::error::Result;

/// What the builder collected about single-active mode.
pub(crate) struct ElectionSetup {
    group: String,
    policy: FailoverPolicy,
    exclusive: Vec<String>,
}

impl Default for ElectionSetup {
    fn default() -> Self {
        ElectionSetup {
            group: DEFAULT_GROUP.to_owned(),
            policy: FailoverPolicy::default(),
            exclusive: Vec::new(),
        }
    }
}

impl ElectionSetup {
    /// Checks the group and makes the election component and the dispatcher's gate.
    pub(crate) fn finish(self) -> Result<(Arc<dyn Component>, ExclusiveGate)> {
        let group = GroupName::new(self.group)?;
        let leadership = Leadership::new(group);
        let component = SingleActive {
            leadership: leadership.clone(),
            policy: self.policy,
        };
        let gate = ExclusiveGate {
            methods: self.exclusive.into_iter().collect(),
            leadership,
        };
        Ok((Arc::new(component), gate))
    }
}

/// Decides whether a request for an exclusive method may run here.
pub(crate) struct ExclusiveGate {
    methods: HashSet<String>,
    pub(crate) leadership: Leadership,
}

/// Why a request was refused: the reply's error text, and the leader to name.
pub(crate) struct Refusal {
    pub(crate) error: String,
    pub(crate) leader: Option<String>,
}

impl ExclusiveGate {
    /// `Ok(None)` for an ordinary method; for an exclusive one while this instance
    /// leads, the fencing token and a guard to hold while the call runs; a refusal
    /// otherwise.
    pub(crate) fn admit(
        &self,
        method: &str,
        instance: &InstanceInfo,
    ) -> Result<Option<(u64, Admission)>, Refusal> {
        if !self.methods.contains(method) {
            return Ok(None);
        }
        self.leadership.admit().map(Some).map_err(|leader| Refusal {
            error: error_code::with_code(
                error_code::NOT_ACTIVE,
                format!(
                    "instance {} is standby for group {}",
                    instance.instance_id,
                    self.leadership.group()
                ),
            ),
            leader,
        })
    }
}

/// Leader election for a service's single-active group, as a component. Added by
/// [`ServiceBuilder::single_active`]; see [`Service::leadership`](crate::Service::leadership).
pub struct SingleActive {
    leadership: Leadership,
    policy: FailoverPolicy,
}

#[async_trait]
impl Component for SingleActive {
    fn describe(&self) -> String {
        format!(
            "single-active group {} lease {:?} renew {:?} takeover {:?}",
            self.leadership.group(),
            self.policy.lease(),
            self.policy.renew_interval(),
            self.policy.takeover_delay()
        )
    }

    async fn start(&self, context: &ComponentContext) -> Result<Box<dyn RunningComponent>> {
        let store = context
            .client()
            .require_backend("single-active services")?
            .lease_store(context.service(), self.leadership.group())
            .await?;
        let elector = Elector {
            store,
            leadership: self.leadership.clone(),
            policy: self.policy,
            instance_id: context.instance_id().to_string(),
            service: context.service().to_string(),
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(elector.run(stop_rx));
        Ok(Box::new(RunningElection { stop, task }))
    }
}

struct RunningElection {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[async_trait]
impl RunningComponent for RunningElection {
    async fn stop(mut self: Box<Self>, drain_timeout: Duration) {
        // A leader releases its lease on the way out, so a standby takes over at once.
        let _ = self.stop.send(true);
        if tokio::time::timeout(drain_timeout, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

impl ServiceBuilder {
    /// Runs the service in single-active mode: its instances elect one leader for
    /// `group` (default `default`), with the given failover `policy` (default
    /// [`FailoverPolicy::balanced`]). Only the leader runs methods registered with
    /// [`exclusive_rpc`](Self::exclusive_rpc). An invalid group name is reported by
    /// [`build`](Self::build) as [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName).
    pub fn single_active(mut self, group: impl Into<String>, policy: FailoverPolicy) -> Self {
        let setup = self.election.get_or_insert_with(ElectionSetup::default);
        setup.group = group.into();
        setup.policy = policy;
        self
    }

    /// Registers an RPC method that only the leader of the single-active group runs
    /// (see [`rpc`](Self::rpc) for the handler's shape). Standbys answer
    /// `NOT_ACTIVE: ...`, which the SDK client retries at the leader. Enables
    /// single-active mode with the defaults unless
    /// [`single_active`](Self::single_active) chose otherwise.
    pub fn exclusive_rpc<F, Fut, P, R>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        F: Fn(RpcContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let method = method.into();
        self.election
            .get_or_insert_with(ElectionSetup::default)
            .exclusive
            .push(method.clone());
        self.rpc(method, handler)
    }
}
