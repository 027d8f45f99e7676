//! Helpers shared by the election tests and the failover benchmark.

pub(crate) mod nodes;
