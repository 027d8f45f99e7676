//! The command adapters a client uses, made on first use and kept with its connection.

use std::sync::Arc;

use crate::application::client::Client;
use crate::error::Result;
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
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a client
    /// without a backend: commands need a work queue and a status store.
    pub(crate) fn of(client: &Client) -> Result<CommandPorts> {
        let backend = client.require_backend("commands")?;
        Ok(client
            .command_ports_cell()
            .get_or_init(|| CommandPorts {
                queue: backend.command_queue(),
                store: backend.command_store(),
            })
            .clone())
    }
}
