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
//! work-queue stream `COMMANDS` (deduplicated by `Nats-Msg-Id` = its id), exactly as a
//! Python sender puts it there, so either side can send to the other. Progress,
//! outcomes and cancel requests go on core subjects under `aegis.cmd.{id}.` and never
//! into the work queue, so a sender hears them at once, without polling. Each command's
//! status record lives under its id in the KV bucket `aegis_commands` (JSON, kept a
//! day), written by its sender and its workers, readable from any process.
//!
//! - **Same id twice**: the sender writes the record (create-if-absent) and the message
//!   at once; a second sender of the id finds the record or is deduplicated by the
//!   stream, and follows the first command's outcome instead. A message sent again
//!   after the stream's deduplication window is skipped by the worker that gets it,
//!   because the record names the queue sequence of the message that owns the command.
//!   (Two such messages delivered at the very same moment, before either was started,
//!   could both run: a resend more than two minutes later while the first still waits.)
//! - **Retries**: a failed run is negatively acknowledged with a delay (exponential
//!   backoff) up to the command's `max_retries`; then the record says failed, the
//!   command goes to the stream `COMMANDS_DLQ` on `dlq.commands.{service}.{command}`,
//!   and the sender gets the failure. Attempts are counted by deliveries, so a worker
//!   crash uses up one retry.
//! - **Timeout and cancel**: the handler's [`CommandContext`] carries the cancellation
//!   signal; a handler that does not return within the cancel grace is dropped.
//! - **Priority and crash recovery**: see [`worker`] (priority is ranked among the
//!   commands a worker holds; it is exact for a backlog that fits in
//!   `concurrency + lookahead`, with aging so low priorities advance).
//! - **Consistency**: a success reaches the sender before it is recorded (one write
//!   later); failures, timeouts and cancels are recorded (and dead-lettered) first.

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
