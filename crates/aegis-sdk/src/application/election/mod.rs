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
//! learns which methods are exclusive and who leads. For those, the client adds an
//! `Aegis-Receipt` header naming a subject of its own, where the leader confirms that
//! it admitted the call; the handler starts only once the server has the confirmation
//! (one round trip), so a leader cannot run a call and die with its confirmation unsent. When the reply is late (100 ms, then at doubling
//! intervals up to 1 s), the client asks the leader whether it is alive (an empty
//! request to `rpc.{service}._alive.{instance}`):
//!
//! - it answers: it is left to finish the call, however long it takes (a stopping
//!   leader keeps its lease, renewing it, and keeps answering until its running calls
//!   are done);
//! - it is gone (the server has no subscriber for it any more) and had not confirmed
//!   the call: the request died with it, maybe sent before the server noticed the
//!   crash. The call is sent again, to whoever leads now;
//! - it is gone after confirming the call: the call may have run, in part or in full.
//!   It ends with [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted) and is never
//!   sent again, so no call runs on two instances;
//! - it does not answer (frozen): the client keeps waiting, up to the deadline. A
//!   leader that thaws after a standby took over refuses new calls by its own clock;
//!   a handler it was running can ask
//!   [`RpcContext::still_leader`](crate::RpcContext::still_leader) before a side
//!   effect, and attach the fencing token to it.
//!
//! A client's first call to a method knows none of this, and waits as for any call.

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
