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
//! learns which methods are exclusive and who leads. When an exclusive call has no
//! reply after 100 ms, the client asks that leader whether it is alive (an empty
//! request to `rpc.{service}._alive.{instance}`, again at doubling intervals until it
//! has an answer). A leader that answers is left to finish the call, however long it
//! takes, and a stopping leader keeps answering until its running calls are done and
//! it has handed over. A leader that is gone (the server has no subscriber for it any
//! more) means the request died with it, maybe sent before the server noticed the
//! crash: the call is sent again, to whoever leads now. A leader that crashes *while*
//! running a call cannot tell which; that call may run again on its successor, under a
//! higher fencing token.

mod announce;
mod component;
mod elector;
pub mod leadership;
pub mod policy;
#[cfg(test)]
mod tests;

pub(crate) use announce::AnnounceLeadership;
pub use component::SingleActive;
pub(crate) use component::{ElectionSetup, ExclusiveGate};
pub use leadership::{Leadership, LeadershipEvent, LeadershipStatus, LossReason};
pub use policy::FailoverPolicy;
