//! Consumer names: one per subscription, so that subscriptions never share or steal
//! each other's consumers.
//!
//! A compete subscription's consumer is shared by every instance of the service:
//! `{service}_ev_{slug}_{hash}`. A broadcast subscription has one consumer per instance:
//! `{service}_ev_{slug}_{hash}_{instance}`. The slug is the pattern made readable
//! (`order.*` -> `order_any`, `order.>` -> `order_all`) or the subscription's own name;
//! the hash covers service, mode, pattern and name exactly, so two subscriptions whose
//! slugs look alike still get different consumers.

use crate::domain::event_pattern::EventPattern;
use crate::domain::{InstanceId, ServiceName};

use super::subscription::DeliveryMode;

/// Longest slug kept; the hash keeps longer ones apart.
const SLUG_MAX: usize = 40;
/// JetStream accepts longer names, but operators read these.
const NAME_MAX: usize = 160;

pub(crate) fn consumer_name(
    service: &ServiceName,
    instance: &InstanceId,
    pattern: &EventPattern,
    mode: DeliveryMode,
    custom: Option<&str>,
) -> String {
    let slug: String = match custom {
        Some(name) => name.to_owned(),
        None => pattern
            .as_str()
            .split('.')
            .map(|token| match token {
                "*" => "any",
                ">" => "all",
                literal => literal,
            })
            .collect::<Vec<_>>()
            .join("_"),
    };
    let slug: String = slug.chars().take(SLUG_MAX).collect();
    let key = format!(
        "{service}\n{}\n{pattern}\n{}",
        mode.as_str(),
        custom.unwrap_or("")
    );
    let hash = fnv1a(key.as_bytes()) as u32;
    let base = format!("{service}_ev_{slug}_{hash:08x}");
    match mode {
        DeliveryMode::Compete => base,
        DeliveryMode::Broadcast => {
            let name = format!("{base}_{instance}");
            if name.len() <= NAME_MAX {
                name
            } else {
                format!("{base}_{:016x}", fnv1a(instance.as_str().as_bytes()))
            }
        }
    }
}

/// FNV-1a, 64 bits: stable across processes and versions, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(pattern: &str, mode: DeliveryMode, instance: &str) -> String {
        consumer_name(
            &ServiceName::new("orders").unwrap(),
            &InstanceId::new(instance).unwrap(),
            &EventPattern::new(pattern).unwrap(),
            mode,
            None,
        )
    }

    #[test]
    fn compete_names_are_shared_by_instances_and_valid() {
        let a = name("order.*", DeliveryMode::Compete, "orders-1");
        let b = name("order.*", DeliveryMode::Compete, "orders-2");
        assert_eq!(a, b);
        assert!(a.starts_with("orders_ev_order_any_"));
        assert!(!a.contains(['.', '*', '>', ' ']));
    }

    #[test]
    fn subscriptions_never_share_a_consumer() {
        let names = [
            name("order.*", DeliveryMode::Compete, "i-1"),
            name("order.>", DeliveryMode::Compete, "i-1"),
            name("order.any", DeliveryMode::Compete, "i-1"),
            name("order_any", DeliveryMode::Compete, "i-1"),
            name("order.*", DeliveryMode::Broadcast, "i-1"),
            name("order.*", DeliveryMode::Broadcast, "i-2"),
        ];
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
