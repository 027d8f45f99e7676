//! A service instance as the registry records it: the contract layout of bucket
//! `service_registry`.
//!
//! Keys are `service-instances__{service}__{instance}`; values are JSON objects with
//! camelCase keys (`serviceName`, `instanceId`, `version`, `status`, `lastHeartbeat`,
//! `stickyActiveGroup`, `stickyActiveStatus`, `metadata`). Readers also accept the
//! snake_case spelling, as Python peers may write either.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::envelope::{now_timestamp, parse_timestamp};
use super::names::{InstanceId, ServiceName};

/// The registry's bucket.
pub const REGISTRY_BUCKET: &str = "service_registry";

const KEY_PREFIX: &str = "service-instances__";

/// `service-instances__{service}__`: the key prefix of a service's instances.
pub fn service_prefix(service: &ServiceName) -> String {
    format!("{KEY_PREFIX}{service}__")
}

/// `service-instances__{service}__{instance}`.
pub fn instance_key(service: &ServiceName, instance: &InstanceId) -> String {
    format!("{KEY_PREFIX}{service}__{instance}")
}

/// The (service, instance) of a registry key, if it is one.
pub fn parse_instance_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    // Split at the first "__": ambiguous when the service name itself holds "__", so
    // prefer the entry's own fields when there is a value.
    let (service, instance) = rest.split_once("__")?;
    (!service.is_empty() && !instance.is_empty()).then_some((service, instance))
}

/// What an instance says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Serving. The default.
    #[default]
    Active,
    /// Running, ready to take over (a standby of a single-active group).
    Standby,
    /// Running but not fit to serve.
    Unhealthy,
    /// Shutting down.
    Shutdown,
}

impl InstanceStatus {
    /// The contract spelling (`ACTIVE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "ACTIVE",
            InstanceStatus::Standby => "STANDBY",
            InstanceStatus::Unhealthy => "UNHEALTHY",
            InstanceStatus::Shutdown => "SHUTDOWN",
        }
    }

    /// Whether calls may go to an instance in this status (ACTIVE or STANDBY).
    pub fn is_serving(self) -> bool {
        matches!(self, InstanceStatus::Active | InstanceStatus::Standby)
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstance {
    /// The service name.
    #[serde(alias = "service_name")]
    pub service_name: String,
    /// The instance id.
    #[serde(alias = "instance_id")]
    pub instance_id: String,
    /// The service version (semver).
    #[serde(default = "default_version")]
    pub version: String,
    /// The instance's status.
    #[serde(default)]
    pub status: InstanceStatus,
    /// When the instance last refreshed its entry, ISO-8601 UTC.
    #[serde(alias = "last_heartbeat", default = "now_timestamp")]
    pub last_heartbeat: String,
    /// The single-active group it belongs to, if any.
    #[serde(alias = "sticky_active_group", default)]
    pub sticky_active_group: Option<String>,
    /// Its role in that group (`ACTIVE`, `STANDBY`, `ELECTING`), if any.
    #[serde(alias = "sticky_active_status", default)]
    pub sticky_active_status: Option<String>,
    /// Free-form facts: host, pid, start time, methods, subscriptions...
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

fn default_version() -> String {
    "1.0.0".to_owned()
}

/// Whether `version` is a semantic version as semver.org defines it:
/// `MAJOR.MINOR.PATCH`, then optionally `-` and a pre-release, then optionally `+` and
/// build metadata (`1.0.0`, `2.1.0-rc.1`, `1.0.0-alpha+001`). Numbers have no leading
/// zeros, nor have numeric pre-release identifiers; identifiers are non-empty and made
/// of ASCII letters, digits and `-`.
///
/// ```
/// use aegis_sdk::domain::instance::is_semver;
///
/// assert!(is_semver("2.1.0-rc.1+build.5"));
/// assert!(!is_semver("v2"));
/// ```
pub fn is_semver(version: &str) -> bool {
    fn identifiers(part: &str) -> impl Iterator<Item = &str> {
        part.split('.')
    }
    fn is_identifier(id: &str) -> bool {
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }
    fn is_number(id: &str) -> bool {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && (id == "0" || !id.starts_with('0'))
    }

    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    // The pre-release starts at the first `-`; later ones belong to it.
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let core: Vec<&str> = identifiers(core).collect();
    core.len() == 3
        && core.iter().all(|n| is_number(n))
        && pre.is_none_or(|pre| {
            identifiers(pre).all(|id| {
                is_identifier(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || is_number(id))
            })
        })
        && build.is_none_or(|build| identifiers(build).all(is_identifier))
}

impl ServiceInstance {
    /// A fresh ACTIVE entry with the current time as its heartbeat.
    pub fn new(service: &ServiceName, instance: &InstanceId, version: impl Into<String>) -> Self {
        ServiceInstance {
            service_name: service.to_string(),
            instance_id: instance.to_string(),
            version: version.into(),
            status: InstanceStatus::Active,
            last_heartbeat: now_timestamp(),
            sticky_active_group: None,
            sticky_active_status: None,
            metadata: serde_json::Map::new(),
        }
    }

    /// The heartbeat as a time; `None` when it cannot be read. A timestamp without an
    /// offset (as Python's `isoformat()` of a naive time gives) is taken as UTC.
    pub fn last_heartbeat_at(&self) -> Option<DateTime<Utc>> {
        parse_timestamp(&self.last_heartbeat).ok().or_else(|| {
            chrono::NaiveDateTime::parse_from_str(&self.last_heartbeat, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|naive| naive.and_utc())
        })
    }

    /// Whether the heartbeat is older than `stale_after` at `now` (or unreadable).
    pub fn is_stale(&self, now: DateTime<Utc>, stale_after: Duration) -> bool {
        match self.last_heartbeat_at() {
            Some(at) => (now - at).to_std().is_ok_and(|age| age > stale_after),
            None => true,
        }
    }

    /// ACTIVE or STANDBY, and not stale.
    pub fn is_healthy(&self, now: DateTime<Utc>, stale_after: Duration) -> bool {
        self.status.is_serving() && !self.is_stale(now, stale_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_versions() {
        for valid in [
            "0.0.0",
            "1.0.0",
            "2.1.0",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0.3.7",
            "1.0.0-x.7.z.92",
            "1.0.0-x-y-z.--",
            "1.0.0-alpha+001",
            "1.0.0+20130313144700",
            "1.0.0-beta+exp.sha.5114f85",
            "1.0.0+21AF26D3----117B344092BD",
            "1.0.0-rc.1+build.1",
            "99999999999999999999.0.0",
        ] {
            assert!(is_semver(valid), "{valid} is semver");
        }
        for invalid in [
            "",
            "v2",
            "2",
            "2.1",
            "v1.0.0",
            "1.0.0.0",
            "01.0.0",
            "1.02.0",
            "1.0.00",
            "1..0",
            "1.0.0-",
            "1.0.0+",
            "1.0.0-alpha..1",
            "1.0.0-01",
            "1.0.0-alpha.01",
            "1.0.0-alpha_beta",
            "1.0.0+build+more",
            "1.0.0+build..1",
            " 1.0.0",
            "1.0.0 ",
            "1.0.0-é",
            "-1.0.0",
            "1.0.x",
        ] {
            assert!(!is_semver(invalid), "{invalid:?} is not semver");
        }
        // The registry's default for entries without a version is one.
        assert!(is_semver(&default_version()));
    }

    #[test]
    fn camel_case_out_and_both_cases_in() {
        let service = ServiceName::new("orders").unwrap();
        let instance = InstanceId::new("orders-1").unwrap();
        let entry = ServiceInstance::new(&service, &instance, "2.0.0");
        let json = serde_json::to_value(&entry).unwrap();
        for key in [
            "serviceName",
            "instanceId",
            "version",
            "status",
            "lastHeartbeat",
            "stickyActiveGroup",
            "stickyActiveStatus",
            "metadata",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(json["status"], "ACTIVE");

        let snake: ServiceInstance = serde_json::from_value(serde_json::json!({
            "service_name": "orders", "instance_id": "orders-2", "version": "1.2.3",
            "status": "STANDBY", "last_heartbeat": "2026-01-02T03:04:05.123456",
            "sticky_active_group": "default", "metadata": {"host": "h"}
        }))
        .unwrap();
        assert_eq!(snake.instance_id, "orders-2");
        assert_eq!(snake.status, InstanceStatus::Standby);
        assert!(snake.last_heartbeat_at().is_some());
        assert_eq!(snake.sticky_active_group.as_deref(), Some("default"));
    }

    #[test]
    fn keys_and_health() {
        let service = ServiceName::new("orders").unwrap();
        let instance = InstanceId::new("orders-1").unwrap();
        let key = instance_key(&service, &instance);
        assert_eq!(key, "service-instances__orders__orders-1");
        assert_eq!(parse_instance_key(&key), Some(("orders", "orders-1")));
        assert!(key.starts_with(&service_prefix(&service)));
        assert_eq!(parse_instance_key("other"), None);

        let mut entry = ServiceInstance::new(&service, &instance, "1.0.0");
        let now = Utc::now();
        assert!(entry.is_healthy(now, Duration::from_secs(30)));
        assert!(!entry.is_healthy(now + chrono::Duration::seconds(31), Duration::from_secs(30)));
        entry.status = InstanceStatus::Unhealthy;
        assert!(!entry.is_healthy(now, Duration::from_secs(30)));
    }
}
