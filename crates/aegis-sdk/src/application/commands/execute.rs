//! One run of one command: check its record, run the handler under its timeout and the
//! cancel signal while keeping the delivery alive, then report and settle it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::cancel::{CancelReason, CancelToken};
use super::context::CommandContext;
use super::handler::RunFailure;
use super::worker::{Held, Shared};
use crate::application::metrics::{self, OpKind, Outcome};
use crate::application::propagation;
use crate::domain::command_status::{CommandState, CommandStatus, Progress};
use crate::domain::error_code;
use crate::error::ErrorKind;
use crate::ports::commands::{CommandStatusStore, DeliveryAcker};

/// How long a run goes before its record says `running` (sooner if it reports
/// progress).
const RUNNING_RECORD_DELAY: Duration = Duration::from_millis(50);

/// The longest command timeout honoured; larger ones are treated as this.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a run ended.
enum Ended {
    Done(Value),
    Failed(RunFailure),
    Cancelled(CancelReason),
}

pub(crate) async fn execute(shared: Arc<Shared>, held: Held) {
    let Held { delivery, command } = held;
    let id: Arc<str> = Arc::from(command.message_id.as_str());
    let attempt = u32::try_from(delivery.delivered).unwrap_or(u32::MAX);
    let acker = delivery.acker.clone();

    // Listen for cancels before reading the record: a cancel either shows in the record
    // or reaches the token.
    let token = CancelToken::new();
    shared.register(&id, token.clone());

    // A command whose record is final already ran (a redelivery after a crash between
    // the final write and the ack) or was cancelled while it waited: settle, don't run.
    let entry = match shared.store.get(&id).await {
        Ok(entry) => entry,
        Err(error) => {
            tracing::warn!(command_id = %id, %error, "cannot read command status; running it");
            None
        }
    };
    if let Some(entry) = &entry {
        if entry.status.state.is_terminal() {
            tracing::debug!(command_id = %id, state = ?entry.status.state, "command already finished");
            shared.unregister(&id);
            shared.announce(&entry.status).await;
            settle(&*acker, &id, Settle::Ack).await;
            return;
        }
        // Another message with this id owns the command (this one was sent again after
        // the queue's deduplication window): its run reports to every sender.
        if entry
            .status
            .sequence
            .is_some_and(|s| s != delivery.sequence)
        {
            tracing::debug!(command_id = %id, "duplicate command message; skipping it");
            shared.unregister(&id);
            settle(&*acker, &id, Settle::Ack).await;
            return;
        }
    }

    let base = entry.as_ref().map(|e| e.revision);
    let mut status = entry.map(|e| e.status).unwrap_or_else(|| {
        CommandStatus::queued(
            &id,
            shared.instance.service.as_str(),
            &shared.command,
            command.priority,
        )
    });
    status.attempt = attempt;
    status.sequence = Some(delivery.sequence);
    status.worker = Some(shared.instance.instance_id.to_string());
    status.error = None;
    status = status.with_state(CommandState::Running);

    let (progress_tx, progress_rx) = watch::channel(None);
    let progress_tx = Arc::new(progress_tx);
    let (done_tx, done_rx) = oneshot::channel();
    let writer = tokio::spawn(write_running(
        shared.store.clone(),
        status.clone(),
        base,
        progress_rx,
        done_rx,
        token.clone(),
    ));

    let timeout = Duration::try_from_secs_f64(command.timeout)
        .unwrap_or(MAX_TIMEOUT)
        .min(MAX_TIMEOUT);
    // The header names the trace when there is one; the context's id agrees with it.
    let trace = propagation::incoming_decoded(&delivery.headers, &command.trace_id);
    let trace_id = match &trace {
        Some(trace) if !trace.matches_envelope_trace_id(&command.trace_id) => {
            trace.envelope_trace_id()
        }
        _ => command.trace_id.clone(),
    };
    let ctx = CommandContext {
        instance: shared.instance.clone(),
        client: shared.client.clone(),
        command: shared.command.clone(),
        command_id: id.clone(),
        trace_id: Arc::from(trace_id.as_str()),
        source: command.source.as_deref().map(Arc::from),
        priority: command.priority,
        attempt,
        max_retries: command.max_retries,
        deadline: Instant::now() + timeout,
        headers: Arc::new(delivery.headers.clone()),
        cancel: token.clone(),
        progress: progress_tx.clone(),
    };
    let span = tracing::info_span!(
        "aegis.command.handle",
        service = %shared.instance.service,
        instance = %shared.instance.instance_id,
        command = %shared.command,
        command_id = %id,
        attempt,
        trace_id = tracing::field::Empty,
    );
    let timing = metrics::op_if_enabled(
        OpKind::CommandHandle,
        &[shared.instance.service.as_str(), &shared.command],
    )
    .map(|op| {
        let started = op.start();
        (op, started)
    });
    let ended = match token.reason() {
        // Cancelled while the record was read: the handler never starts.
        Some(reason) => Ended::Cancelled(reason),
        None => {
            let work = run(&shared, ctx, command.payload, &token, timeout, &*acker);
            propagation::continue_trace(trace, span, work).await
        }
    };
    if let Some((op, started)) = timing {
        let outcome = match &ended {
            Ended::Done(_) => Outcome::Ok,
            Ended::Failed(_) => Outcome::Error,
            Ended::Cancelled(CancelReason::TimedOut) => Outcome::Timeout,
            Ended::Cancelled(_) => Outcome::Cancelled,
        };
        op.finish(started, outcome);
    }
    shared.unregister(&id);

    let retry =
        matches!(&ended, Ended::Failed(RunFailure::Failed(_))) && attempt <= command.max_retries;
    let (state, result, error, settle_as) = match ended {
        Ended::Done(value) => (CommandState::Succeeded, Some(value), None, Settle::Ack),
        Ended::Failed(RunFailure::Failed(e)) if retry => {
            let delay = shared.options.backoff(attempt);
            tracing::debug!(command_id = %id, attempt, ?delay, error = %e, "command failed; retrying");
            (
                CommandState::Queued,
                None,
                Some(e.to_wire()),
                Settle::Retry(delay),
            )
        }
        Ended::Failed(RunFailure::Failed(e)) => (
            CommandState::Failed,
            None,
            Some(e.to_wire()),
            Settle::DeadLetter,
        ),
        Ended::Failed(RunFailure::Invalid(reason)) => {
            (CommandState::Failed, None, Some(reason), Settle::DeadLetter)
        }
        Ended::Cancelled(CancelReason::Requested) => (
            CommandState::Cancelled,
            None,
            Some(format!("command {id} was cancelled")),
            Settle::Ack,
        ),
        Ended::Cancelled(CancelReason::TimedOut) => (
            CommandState::TimedOut,
            None,
            Some(error_code::with_code(
                error_code::TIMEOUT,
                format!("command ran past its timeout of {}s", command.timeout),
            )),
            Settle::Ack,
        ),
        // The worker stops: hand the command to another worker at once.
        Ended::Cancelled(_) => (
            CommandState::Queued,
            None,
            None,
            Settle::Retry(Duration::ZERO),
        ),
    };
    status.result = result;
    status.error = error;
    status.progress = progress_tx.borrow().clone().or(status.progress);
    let status = status.with_state(state);

    // A success is announced first, then recorded: the sender is not kept waiting for
    // bookkeeping, and a lookup right after may trail by this one write. Any other
    // outcome is recorded (and dead-lettered) before the sender hears of it.
    let succeeded = state == CommandState::Succeeded;
    if succeeded {
        shared.announce(&status).await;
    }

    // Let the running-state writer finish its last write, so that the final record
    // below is the last one.
    let _ = done_tx.send(());
    let _ = writer.await;
    if let Err(error) = shared.store.put(&status).await {
        tracing::warn!(command_id = %id, %error, "cannot record the command's outcome");
    }
    if let Settle::DeadLetter = settle_as {
        let reason = status.error.clone().unwrap_or_default();
        shared
            .dead_letter(
                &delivery.subject,
                &delivery.payload,
                &reason,
                Some(&id),
                attempt,
            )
            .await;
    }
    if state.is_terminal() && !succeeded {
        shared.announce(&status).await;
    }
    settle(&*acker, &id, settle_as).await;
}

/// Drives the handler until it returns, or until cancellation plus the grace period.
/// Keeps the delivery alive meanwhile, so the server never hands it to another worker.
async fn run(
    shared: &Shared,
    ctx: CommandContext,
    payload: Value,
    token: &CancelToken,
    timeout: Duration,
    acker: &dyn DeliveryAcker,
) -> Ended {
    let handler = AssertUnwindSafe(shared.handler.call(ctx, payload)).catch_unwind();
    tokio::pin!(handler);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    let grace = tokio::time::sleep(MAX_TIMEOUT);
    tokio::pin!(grace);
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.keepalive,
        shared.keepalive,
    );
    let mut cancel_seen = None;

    // Races: the handler finishing, the timeout passing, a cancel arriving, the grace
    // after a cancel running out, and the keep-alive tick. Once cancelled, whatever the
    // handler returns counts as cancelled; one that ignores the signal is dropped after
    // the grace period.
    loop {
        tokio::select! {
            result = &mut handler => {
                if let Some(reason) = cancel_seen.or(token.reason()) {
                    return Ended::Cancelled(reason);
                }
                return match result {
                    Ok(Ok(value)) => Ended::Done(value),
                    Ok(Err(failure)) => Ended::Failed(failure),
                    Err(_) => Ended::Failed(RunFailure::Failed(
                        crate::application::context::HandlerError::with_code(
                            error_code::INTERNAL_ERROR,
                            "command handler panicked",
                        ),
                    )),
                };
            }
            _ = &mut deadline, if cancel_seen.is_none() => {
                token.cancel(CancelReason::TimedOut);
            }
            reason = &mut cancelled, if cancel_seen.is_none() => {
                cancel_seen = Some(reason);
                grace.as_mut().reset(tokio::time::Instant::now() + shared.options.cancel_grace);
            }
            _ = &mut grace, if cancel_seen.is_some() => {
                tracing::debug!("cancelled command handler ignored the signal; dropping it");
                return Ended::Cancelled(cancel_seen.unwrap_or(CancelReason::Stopping));
            }
            _ = keepalive.tick() => {
                if let Err(error) = acker.in_progress().await {
                    tracing::debug!(%error, "keep-alive of a running command failed");
                }
            }
        }
    }
}

/// Moves the record to running (compare-and-set against the revision read before the
/// run, so a cancel that landed in between is noticed), then records progress as it
/// comes, the latest value only, until told to stop.
///
/// A command that finishes within [`RUNNING_RECORD_DELAY`] without reporting progress
/// gets no running record at all, only its final one: one write less on the hot path.
async fn write_running(
    store: Arc<dyn CommandStatusStore>,
    mut status: CommandStatus,
    base: Option<u64>,
    mut progress: watch::Receiver<Option<Progress>>,
    mut done: oneshot::Receiver<()>,
    token: CancelToken,
) {
    tokio::select! {
        biased;
        _ = &mut done => return,
        _ = progress.changed() => {}
        _ = tokio::time::sleep(RUNNING_RECORD_DELAY) => {}
    }
    status.progress = progress.borrow_and_update().clone();
    status.updated_at = crate::domain::envelope::now_timestamp();

    let claimed = match base {
        Some(revision) => store.update(&status, revision).await,
        None => store.create(&status).await,
    };
    if let Err(error) = claimed {
        if matches!(
            error.kind(),
            ErrorKind::RevisionMismatch | ErrorKind::AlreadyExists
        ) {
            if let Ok(Some(now)) = store.get(&status.command_id).await {
                if now.status.state == CommandState::Cancelled {
                    token.cancel(CancelReason::Requested);
                    return;
                }
            }
            let _ = store.put(&status).await;
        } else {
            tracing::debug!(command_id = %status.command_id, %error, "cannot record running state");
        }
    }
    loop {
        tokio::select! {
            biased;
            // The last report may not be written yet; the final record carries it.
            _ = &mut done => return,
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
                status.progress = progress.borrow_and_update().clone();
                status.updated_at = crate::domain::envelope::now_timestamp();
                if let Err(error) = store.put(&status).await {
                    tracing::debug!(command_id = %status.command_id, %error, "cannot record progress");
                }
            }
        }
    }
}

pub(crate) enum Settle {
    Ack,
    Retry(Duration),
    DeadLetter,
}

pub(crate) async fn settle(acker: &dyn DeliveryAcker, id: &str, how: Settle) {
    let result = match how {
        Settle::Ack | Settle::DeadLetter => acker.ack().await,
        Settle::Retry(delay) if delay.is_zero() => acker.nak(None).await,
        Settle::Retry(delay) => acker.nak(Some(delay)).await,
    };
    if let Err(error) = result {
        tracing::warn!(command_id = %id, %error, "cannot settle a command delivery");
    }
}
