//! One module per subcommand.

pub(crate) mod call;
pub(crate) mod demo;
pub(crate) mod server;
