//! Single-active election in NATS KV: bucket and key names, and the leader record.
//!
//! Contract: bucket `election_{service}` (every `-` replaced by `_`), key
//! `sticky-active.{service}.{group}.leader`, value JSON `{"instance_id", "elected_at",
//! "last_heartbeat", "metadata"}` with epoch seconds as floats.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::ServiceName;
use crate::error::{Error, ErrorKind, Result};

/// Reply header naming the leader, sent with a `NOT_ACTIVE` refusal.
pub const LEADER_HEADER: &str = "Aegis-Leader";

/// Header of an exclusive call naming a subject (under `_INBOX.`) where the leader
/// confirms, with an empty message, that it admitted the call and is running it. A
/// caller that holds the confirmation never sends the call again.
pub const RECEIPT_HEADER: &str = "Aegis-Receipt";

/// The key in [`LeaderRecord::metadata`] under which a leader records its term's fencing
/// token, so that anyone reading the lease can tell it. Written from the first renewal
/// of a term on (the first write cannot know its own revision); until then the token is
/// the record's revision, see [`LeaderRecord::fencing_token`].
pub const FENCING_TOKEN_KEY: &str = "fencing_token";

/// The group of a service's single-active instances when none is named.
pub const DEFAULT_GROUP: &str = "default";

/// A single-active group name: `[a-zA-Z0-9_-]+`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Checks `value`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an empty name, one longer than 64 characters or one
    /// with characters outside `[a-zA-Z0-9_-]`.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "invalid group {}: must be 1-64 letters, digits, '_' or '-'",
                    crate::domain::names::excerpt(&value)
                ),
            ));
        }
        Ok(GroupName(value))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for GroupName {
    fn default() -> Self {
        GroupName(DEFAULT_GROUP.to_owned())
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `election_{service}` with every `-` replaced by `_`.
pub fn bucket_name(service: &ServiceName) -> String {
    format!("election_{}", service.as_str().replace('-', "_"))
}

/// `sticky-active.{service}.{group}.leader`.
pub fn leader_key(service: &ServiceName, group: &GroupName) -> String {
    format!("sticky-active.{service}.{group}.leader")
}

/// The value of the leader key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leading instance.
    pub instance_id: String,
    /// When its term began, in epoch seconds.
    pub elected_at: f64,
    /// When it last renewed, in epoch seconds.
    pub last_heartbeat: f64,
    /// Free-form facts about the leader.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl LeaderRecord {
    /// A record for `instance_id`, elected and renewed now.
    pub fn new(instance_id: impl Into<String>) -> Self {
        let now = epoch_seconds();
        LeaderRecord {
            instance_id: instance_id.into(),
            elected_at: now,
            last_heartbeat: now,
            metadata: serde_json::Map::new(),
        }
    }

    /// The same term, renewed now.
    pub fn renewed(&self) -> Self {
        LeaderRecord {
            last_heartbeat: epoch_seconds(),
            ..self.clone()
        }
    }

    /// The term's fencing token, given the `revision` this record was read at: the
    /// token the leader recorded, or, for the first write of a term (not renewed yet),
    /// that write's revision. `None` for a renewed record without a recorded token (a
    /// leader that does not record it, such as a Python peer).
    pub fn fencing_token(&self, revision: u64) -> Option<u64> {
        match self.metadata.get(FENCING_TOKEN_KEY) {
            Some(token) => token.as_u64(),
            None if self.last_heartbeat == self.elected_at => Some(revision),
            None => None,
        }
    }

    /// The record as the JSON bytes stored in KV.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings, floats and a JSON map always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] when `bytes` is not such a JSON object.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::new(ErrorKind::Decode, format!("invalid leader record: {e}")))
    }
}

/// Seconds since the Unix epoch, as a float.
pub fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names() {
        let service = ServiceName::new("order-service").unwrap();
        assert_eq!(bucket_name(&service), "election_order_service");
        assert_eq!(
            leader_key(&service, &GroupName::default()),
            "sticky-active.order-service.default.leader"
        );
        assert!(GroupName::new("a.b").is_err());
        assert!(GroupName::new("").is_err());
    }

    #[test]
    fn record_round_trip_uses_contract_keys() {
        let record = LeaderRecord::new("svc-1");
        let json: serde_json::Value = serde_json::from_slice(&record.to_json()).unwrap();
        for key in ["instance_id", "elected_at", "last_heartbeat", "metadata"] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        assert_eq!(record.fencing_token(7), Some(7), "first write of a term");
        let mut renewed = record.renewed();
        renewed.last_heartbeat += 1.0;
        assert_eq!(renewed.fencing_token(9), None);
        renewed.metadata.insert(FENCING_TOKEN_KEY.into(), 7.into());
        assert_eq!(renewed.fencing_token(9), Some(7));

        let back = LeaderRecord::from_json(&record.to_json()).unwrap();
        assert_eq!(back.instance_id, record.instance_id);
        assert!((back.elected_at - record.elected_at).abs() < 1e-3);
        assert!(LeaderRecord::from_json(b"{}").is_err());
    }
}
