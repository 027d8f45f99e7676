//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod call;
pub(crate) mod command;
pub(crate) mod demo;
pub(crate) mod kv;
pub(crate) mod leader;
pub(crate) mod publish;
pub(crate) mod server;
pub(crate) mod services;
pub(crate) mod subscribe;
