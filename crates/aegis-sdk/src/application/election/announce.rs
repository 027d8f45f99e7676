//! Records the instance's role in its single-active group in the service registry.

use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::leadership::{Leadership, LeadershipStatus};
use crate::application::component::{Component, ComponentContext, RunningComponent};
use crate::application::registration::RegistrationHandle;
use crate::domain::instance::InstanceStatus;
use crate::error::Result;

/// Mirrors leadership changes into the registry entry: status ACTIVE for the leader,
/// STANDBY for the others, with `stickyActiveGroup` and `stickyActiveStatus` set as the
/// wire contract has them. Added by the builder when a service has both.
pub(crate) struct AnnounceLeadership {
    pub(crate) leadership: Leadership,
    pub(crate) registration: RegistrationHandle,
}

fn announce(registration: &RegistrationHandle, group: &str, status: &LeadershipStatus) {
    let (instance, role) = match status {
        LeadershipStatus::Leader { .. } => (InstanceStatus::Active, "ACTIVE"),
        LeadershipStatus::Standby { .. } => (InstanceStatus::Standby, "STANDBY"),
        LeadershipStatus::Inactive => (InstanceStatus::Standby, "ELECTING"),
    };
    registration.set_sticky_active(Some(group.to_owned()), Some(role.to_owned()));
    registration.set_status(instance);
}

#[async_trait]
impl Component for AnnounceLeadership {
    fn describe(&self) -> String {
        format!("registry role for group {}", self.leadership.group())
    }

    async fn start(&self, _context: &ComponentContext) -> Result<Box<dyn RunningComponent>> {
        let group = self.leadership.group().to_string();
        let registration = self.registration.clone();
        let mut changes = self.leadership.watch();
        let current = changes.borrow_and_update().clone();
        announce(&registration, &group, &current);
        let task = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let status = changes.borrow_and_update().clone();
                announce(&registration, &group, &status);
            }
        });
        Ok(Box::new(Announcing { task }))
    }
}

struct Announcing {
    task: JoinHandle<()>,
}

#[async_trait]
impl RunningComponent for Announcing {
    async fn stop(mut self: Box<Self>, _drain_timeout: Duration) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Announcing {
    fn drop(&mut self) {
        self.task.abort();
    }
}
