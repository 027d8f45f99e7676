//! Long-running commands over the `COMMANDS` work queue.
//!
//! - Senders: [`Client::send_command`](crate::Client::send_command) returns a
//!   [`CommandHandle`] with live progress, the outcome and cancel;
//!   [`Client::command_status`](crate::Client::command_status) looks a command up by id
//!   from any process.
//! - Workers: [`ServiceBuilder::on_command`](crate::ServiceBuilder::on_command) adds a
//!   [`CommandWorker`] component; every instance of the service shares the work.
//!
//! What travels where: the command envelope goes to `commands.{service}.{command}` in the
//! work-queue stream `COMMANDS` (deduplicated by `Nats-Msg-Id` = its id, as the contract
//! says); progress, outcomes and cancel requests go on core subjects under
//! `aegis.cmd.{id}.` and never into the work queue; each command's status record lives
//! under its id in the KV bucket `aegis_commands` (created by its sender, so a second
//! sender of the same id follows the first command instead of sending it again).
//! Failures are retried with exponential backoff (a negative ack with a delay) up to
//! the command's `max_retries`; then the sender gets the failure and the command goes
//! to the stream `COMMANDS_DLQ` on `dlq.commands.{service}.{command}`. Priority and
//! crash recovery: see [`worker`] (priority is ranked among the commands
//! a worker holds; it is exact for a backlog that fits in `concurrency + lookahead`).
//!
//! Attempts are counted by deliveries, so a worker crash uses up one retry.

mod builder;
mod cancel;
mod context;
mod execute;
mod handle;
mod handler;
mod options;
mod ports;
mod priority;
mod sender;
pub mod worker;

pub use cancel::CancelReason;
pub use context::CommandContext;
pub use handle::CommandHandle;
pub use options::WorkerOptions;
pub use sender::SendCommand;
pub use worker::CommandWorker;

pub(crate) use ports::CommandPorts;
