//! The built-in `health` RPC method of every service.
//!
//! Every service answers `rpc.{service}.health` (and, for one chosen instance,
//! `rpc.{service}.health.{instance}`) with its status, instance, version, uptime and, for
//! a single-active service, its leadership:
//!
//! ```json
//! {"status": "healthy", "service": "orders", "instance": "orders-1a2b3c4d",
//!  "version": "1.0.0", "uptime_seconds": 12.5,
//!  "leadership": {"group": "default", "role": "leader", "is_leader": true,
//!                 "fencing_token": 7, "leader": "orders-1a2b3c4d"}}
//! ```
//!
//! A service that registers its own method called `health` keeps it: the user's
//! handler replaces the built-in one (the `$SRV` endpoints list whichever is served).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use super::context::{HandlerError, RpcContext};
use super::election::{Leadership, LeadershipStatus};
use super::handler::{RpcHandler, TypedHandler};
use super::service::ServiceState;

/// The name of the built-in method.
pub const HEALTH_METHOD: &str = "health";

/// What the built-in handler reads.
pub(crate) struct HealthSource {
    pub(crate) state: watch::Receiver<ServiceState>,
    pub(crate) started: Mutex<Option<Instant>>,
    pub(crate) leadership: Option<Leadership>,
}

impl HealthSource {
    /// Notes that the service (re)started now.
    pub(crate) fn mark_started(&self) {
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// The reply of the built-in `health` method.
#[derive(Debug, Serialize)]
struct HealthReply {
    status: &'static str,
    service: String,
    instance: String,
    version: String,
    uptime_seconds: f64,
    leadership: Option<LeadershipReply>,
}

#[derive(Debug, Serialize)]
struct LeadershipReply {
    group: String,
    role: &'static str,
    is_leader: bool,
    fencing_token: Option<u64>,
    leader: Option<String>,
}

/// The built-in handler.
pub(crate) fn handler(source: Arc<HealthSource>) -> Arc<dyn RpcHandler> {
    Arc::new(TypedHandler::new(
        move |ctx: RpcContext, _params: serde_json::Value| {
            let reply = reply(&source, &ctx);
            async move { Ok::<_, HandlerError>(reply) }
        },
    ))
}

fn reply(source: &HealthSource, ctx: &RpcContext) -> HealthReply {
    let status = match *source.state.borrow() {
        ServiceState::Started => "healthy",
        ServiceState::Starting | ServiceState::Initializing => "starting",
        ServiceState::Stopping => "stopping",
        ServiceState::Stopped => "stopped",
        ServiceState::Failed => "failed",
    };
    let uptime = source
        .started
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(0.0, |started| started.elapsed().as_secs_f64());
    let leadership = source.leadership.as_ref().map(|leadership| {
        let fencing_token = leadership.fencing_token();
        let (role, leader) = match leadership.status() {
            LeadershipStatus::Leader { .. } => ("leader", Some(ctx.instance_id().to_string())),
            LeadershipStatus::Standby { leader } => ("standby", leader),
            LeadershipStatus::Inactive => ("inactive", None),
        };
        LeadershipReply {
            group: leadership.group().to_string(),
            role,
            is_leader: fencing_token.is_some(),
            fencing_token,
            leader,
        }
    });
    HealthReply {
        status,
        service: ctx.service().to_string(),
        instance: ctx.instance_id().to_string(),
        version: ctx.version().to_owned(),
        uptime_seconds: uptime,
        leadership,
    }
}
