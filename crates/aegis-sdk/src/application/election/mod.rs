//! Single-active services: one leader per group, elected through NATS KV, with
//! sub-second failover after a crash and no split brain.
//!
//! Enable it with [`ServiceBuilder::single_active`](crate::ServiceBuilder::single_active)
//! and register methods only the leader may run with
//! [`ServiceBuilder::exclusive_rpc`](crate::ServiceBuilder::exclusive_rpc). Every
//! instance subscribes to exclusive methods in the ordinary queue group; a standby (or a
//! leader whose lease is no longer fresh by its own clock) answers
//! `NOT_ACTIVE: instance X is standby for group G` with a header naming the leader, and
//! the SDK client retries there. Handlers read the term's fencing token from
//! [`RpcContext::fencing_token`](crate::RpcContext::fencing_token).
//!
//! # Calls through a crash
//!
//! A leader names itself in the `Aegis-Leader` header of its replies, so a client
//! learns which methods are exclusive. For those, each attempt waits only a short
//! budget (250 ms, doubling up to 2 s) before the call is retried through the queue
//! group: a request that reached a leader as it died (or before the server noticed the
//! crash) is not lost for the whole deadline. Every attempt carries the same
//! `message_id`, and the leader remembers the calls it ran (the last 60 s, at most
//! 10,000) and answers a retry with the first run's reply, so a slow leader does not
//! run a call twice. A leader that crashes *while* running a call cannot tell its
//! successor; that call may run again there, under a higher fencing token.
//!
//! # How a term works
//!
//! A standby creates the leader key atomically when it is free (never written, deleted
//! by a leader that stopped, or expired by the server, which every watcher hears at
//! once through an expiry marker). The leader renews it with a revision-checked update
//! every [`FailoverPolicy::renew_interval`], each write carrying a server TTL of
//! [`FailoverPolicy::lease`]. Standbys watch the key and, if no renewal arrives within
//! [`FailoverPolicy::takeover_delay`], take it over with a compare-and-set on the last
//! revision they saw; the leader has stopped acting by then (see [`FailoverPolicy`]
//! for the margin). The fencing token is the key's revision when the term began, so it
//! grows with every term.
//!
//! Known limit: someone deleting the leader key by hand ends the term at once for the
//! standbys, while the leader hears it only through its watch a moment later.

mod announce;
mod component;
mod elector;
pub mod leadership;
pub mod policy;
mod replay;
#[cfg(test)]
mod tests;

pub(crate) use announce::AnnounceLeadership;
pub use component::SingleActive;
pub(crate) use component::{ElectionSetup, ExclusiveGate};
pub use leadership::{Leadership, LeadershipEvent, LeadershipStatus, LossReason};
pub use policy::FailoverPolicy;
pub(crate) use replay::{replayed, Claim, Recorded};
