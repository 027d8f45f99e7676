//! What the SDK records about a command beyond its envelope: its state, its last
//! progress, its outcome, and the subjects and headers that carry them.
//!
//! None of this is part of the Python contract: the status record lives in the KV bucket
//! [`STATUS_BUCKET`], progress and outcomes travel on core subjects under `aegis.cmd.`
//! (never in the `COMMANDS` work queue), and the extensions a command carries travel in
//! headers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::now_timestamp;
use super::Priority;
use crate::error::{Error, ErrorKind, Result};

/// The work-queue stream of the contract.
pub const STREAM: &str = "COMMANDS";
/// The subjects of [`STREAM`].
pub const STREAM_SUBJECTS: &str = "commands.>";
/// The dead-letter stream: commands that failed for good or could not be decoded.
pub const DLQ_STREAM: &str = "COMMANDS_DLQ";
/// The subjects of [`DLQ_STREAM`]: `dlq.commands.{service}.{command}`.
pub const DLQ_SUBJECTS: &str = "dlq.commands.>";
/// The KV bucket holding one [`CommandStatus`] per command id.
pub const STATUS_BUCKET: &str = "aegis_commands";

/// Header: JetStream's deduplication id; a command's `message_id`.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header on dead letters: why the command was dead-lettered.
pub const HEADER_DLQ_REASON: &str = "Aegis-Dlq-Reason";
/// Header on dead letters: the command id, when it could be read.
pub const HEADER_COMMAND_ID: &str = "Aegis-Command-Id";
/// Header on dead letters: how many times the command was delivered.
pub const HEADER_ATTEMPTS: &str = "Aegis-Attempts";

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CommandState {
    /// Sent, waiting for a worker (or waiting for a retry).
    Queued,
    /// A worker runs it.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Failed after its retries (or could not be run at all).
    Failed,
    /// Cancelled by a sender.
    Cancelled,
    /// Ran past its timeout and was cancelled.
    TimedOut,
}

impl CommandState {
    /// Whether the command is finished: it will not run (again).
    pub fn is_terminal(self) -> bool {
        !matches!(self, CommandState::Queued | CommandState::Running)
    }
}

/// One progress report of a running command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// How far the command is, 0 to 100.
    pub percent: f64,
    /// What it is doing.
    pub message: String,
}

/// Everything known about one command, as stored under its id in [`STATUS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandStatus {
    /// The command's `message_id`.
    pub command_id: String,
    /// The service that runs it.
    pub service: String,
    /// The command name.
    pub command: String,
    /// Its state.
    pub state: CommandState,
    /// Its priority.
    pub priority: Priority,
    /// How many times a worker started it (0 while queued the first time).
    pub attempt: u32,
    /// The last progress a worker reported.
    pub progress: Option<Progress>,
    /// The result, once succeeded.
    pub result: Option<Value>,
    /// The error text, once failed, cancelled or timed out.
    pub error: Option<String>,
    /// The instance that ran it last.
    pub worker: Option<String>,
    /// When this record was written, ISO-8601 UTC.
    pub updated_at: String,
    /// The queue sequence of the message a worker runs: a second message with the same
    /// id (sent again after the queue's deduplication window) has another and is skipped.
    #[serde(default)]
    pub sequence: Option<u64>,
}

impl CommandStatus {
    /// A freshly queued command.
    pub fn queued(command_id: &str, service: &str, command: &str, priority: Priority) -> Self {
        CommandStatus {
            command_id: command_id.to_owned(),
            service: service.to_owned(),
            command: command.to_owned(),
            state: CommandState::Queued,
            priority,
            attempt: 0,
            progress: None,
            result: None,
            error: None,
            worker: None,
            updated_at: now_timestamp(),
            sequence: None,
        }
    }

    /// This record moved to `state`, stamped now.
    pub fn with_state(mut self, state: CommandState) -> Self {
        self.state = state;
        self.updated_at = now_timestamp();
        self
    }

    /// The outcome for a sender: the result on success, else the matching error
    /// ([`ErrorKind::Remote`] for failures, [`ErrorKind::Timeout`],
    /// [`ErrorKind::Cancelled`]). `None` while the command is not finished.
    pub fn outcome(&self) -> Option<Result<Value>> {
        let error = || self.error.clone().unwrap_or_default();
        match self.state {
            CommandState::Queued | CommandState::Running => None,
            CommandState::Succeeded => Some(Ok(self.result.clone().unwrap_or(Value::Null))),
            CommandState::Failed => Some(Err(Error::remote(error()))),
            CommandState::TimedOut => Some(Err(Error::new(ErrorKind::Timeout, error()))),
            CommandState::Cancelled => Some(Err(Error::new(ErrorKind::Cancelled, error()))),
        }
    }
}

/// Checks that a command id can be a subject token and a KV key: `[a-zA-Z0-9_-]+`, at
/// most 128 characters (a UUID v4 always is).
///
/// # Errors
/// [`ErrorKind::InvalidName`] otherwise.
pub fn check_command_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "invalid command id {}: must be 1 to 128 letters, digits, '_' or '-'",
                crate::domain::names::excerpt(id)
            ),
        ))
    }
}

/// `aegis.cmd.{id}.progress`: progress reports of a command.
pub fn progress_subject(id: &str) -> String {
    format!("aegis.cmd.{id}.progress")
}

/// `aegis.cmd.{id}.result`: the final status record of a command.
pub fn result_subject(id: &str) -> String {
    format!("aegis.cmd.{id}.result")
}

/// `aegis.cmd.{id}.cancel`: a sender asks the worker running a command to stop.
pub fn cancel_subject(id: &str) -> String {
    format!("aegis.cmd.{id}.cancel")
}

/// `aegis.cmd.{id}.*`: everything a sender hears about one command.
pub fn events_subject(id: &str) -> String {
    format!("aegis.cmd.{id}.*")
}

/// `aegis.cmd.*.cancel`: every cancel request, which workers listen to.
pub const CANCEL_WILDCARD: &str = "aegis.cmd.*.cancel";

/// `dlq.commands.{service}.{command}`, or `dlq.commands.{rest}` for a subject that is
/// not a command subject.
pub fn dead_letter_subject(command_subject: &str) -> String {
    format!("dlq.{command_subject}")
}

/// The durable consumer shared by every worker of one command of one service.
pub fn consumer_name(service: &str, command: &str) -> String {
    format!("aegis_cmd_{service}_{command}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_maps_states_to_error_kinds() {
        let queued = CommandStatus::queued("a", "s", "c", Priority::Low);
        assert!(queued.outcome().is_none());
        let mut done = queued.clone().with_state(CommandState::Succeeded);
        done.result = Some(serde_json::json!({"n": 1}));
        assert_eq!(done.outcome().unwrap().unwrap()["n"], 1);
        let mut failed = queued.clone().with_state(CommandState::Failed);
        failed.error = Some("boom".into());
        assert_eq!(
            failed.outcome().unwrap().unwrap_err().kind(),
            ErrorKind::Remote
        );
        let timed = queued.clone().with_state(CommandState::TimedOut);
        assert_eq!(
            timed.outcome().unwrap().unwrap_err().kind(),
            ErrorKind::Timeout
        );
        let cancelled = queued.with_state(CommandState::Cancelled);
        assert_eq!(
            cancelled.outcome().unwrap().unwrap_err().kind(),
            ErrorKind::Cancelled
        );
    }

    #[test]
    fn command_ids_must_be_tokens() {
        assert!(check_command_id(&crate::domain::envelope::new_id()).is_ok());
        for bad in ["", "a.b", "a b", "*", ">", "x\n"] {
            assert_eq!(
                check_command_id(bad).unwrap_err().kind(),
                ErrorKind::InvalidName
            );
        }
    }

    #[test]
    fn status_round_trips_as_json() {
        let status = CommandStatus::queued("id-1", "svc", "run", Priority::Critical);
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"state\":\"queued\""));
        assert!(json.contains("\"priority\":\"critical\""));
        let back: CommandStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, status);
    }
}
