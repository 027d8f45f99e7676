//! The command adapters a client uses, made on first use and kept with its connection.

use std::sync::Arc;

use crate::adapters::nats::{NatsCommandQueue, NatsCommandStore};
use crate::application::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::ports::commands::{CommandQueue, CommandStatusStore};

/// The work queue and the status store of one connection.
#[derive(Clone)]
pub(crate) struct CommandPorts {
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) store: Arc<dyn CommandStatusStore>,
}

impl CommandPorts {
    /// The ports of `client`'s connection.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a client without a NATS connection: commands
    /// need JetStream.
    pub(crate) fn of(client: &Client) -> Result<CommandPorts> {
        let nats = client.nats().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "commands need a NATS connection (JetStream work queue and KV)",
            )
        })?;
        Ok(client
            .command_ports_cell()
            .get_or_init(|| CommandPorts {
                queue: Arc::new(NatsCommandQueue::new(nats)),
                store: Arc::new(NatsCommandStore::new(nats)),
            })
            .clone())
    }
}
