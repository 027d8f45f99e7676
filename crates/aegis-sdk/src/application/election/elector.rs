//! The election task of one instance: standby until it wins the lease, then leader
//! renewing it until it stops, loses it, or its own clock says it must step down.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

use super::leadership::{Leadership, LossReason};
use super::policy::FailoverPolicy;
use crate::application::metrics::{self, GaugeKind, Metrics, OpKind, Outcome};
use crate::domain::election::{LeaderRecord, FENCING_TOKEN_KEY};
use crate::error::{ErrorKind, Result};
use crate::ports::election::{LeaseEvent, LeaseStore};

/// How long a stopping leader waits for the release of its lease.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct Elector {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) leadership: Leadership,
    pub(crate) policy: FailoverPolicy,
    pub(crate) instance_id: String,
    /// The service, for the metrics' labels.
    pub(crate) service: String,
}

/// A term this instance holds.
struct Term {
    token: u64,
    revision: u64,
    record: LeaderRecord,
    valid_until: Instant,
    next_renew: Instant,
    last_error: Option<crate::Error>,
}

/// What a standby knows and plans.
struct Standby {
    /// The last revision of a live lease seen; `None` when the key is gone.
    seen: Option<u64>,
    /// When to try to acquire (key gone) or take over (`seen` not renewed).
    next_attempt: Instant,
}

type Events = BoxStream<'static, Result<LeaseEvent>>;

/// Resolves once asked to stop (or when nobody can ask any more).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// True once asked to stop, or when the component that could ask went away.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

impl Elector {
    /// Runs until `stop` turns true; a leader then releases its lease.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut events: Option<Events> = None;
        let mut standby = Standby {
            seen: None,
            next_attempt: Instant::now(),
        };
        self.leadership.set_standby(None);

        loop {
            if stopped(&stop) {
                break;
            }
            // A broken watch is reopened; its first event is the key's current state.
            let Some(watch) = events.as_mut() else {
                match self.store.watch().await {
                    Ok(watch) => events = Some(watch),
                    Err(error) => {
                        tracing::debug!(%error, "cannot watch the leader key; retrying");
                        tokio::select! {
                            _ = stop_requested(&mut stop) => {}
                            _ = tokio::time::sleep(self.policy.renew_interval()) => {}
                        }
                    }
                }
                continue;
            };

            // Standby: wait for a chance, in this order of urgency. A stop ends the task.
            // A watch event updates what we know: a put restarts the takeover delay, a
            // delete or expiry marker means the key is free now. When the planned
            // moment comes, try the lease: create if free, else compare-and-set on the
            // revision whose holder stopped renewing.
            let event = tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => continue,
                event = watch.next() => Some(event),
                _ = sleep_until(standby.next_attempt) => None,
            };
            match event {
                Some(Some(Ok(event))) => self.observe(event, &mut standby),
                Some(Some(Err(error))) => {
                    tracing::debug!(%error, "leader key watch failed; reopening");
                    events = None;
                }
                Some(None) => events = None,
                None => {
                    if let Some(term) = self.attempt(&mut standby).await {
                        standby = self.lead(term, &mut events, &mut stop).await;
                    }
                }
            }
        }
        self.leadership.set_inactive();
    }

    fn observe(&self, event: LeaseEvent, standby: &mut Standby) {
        match event {
            LeaseEvent::Put(entry) => {
                standby.seen = Some(entry.revision);
                standby.next_attempt =
                    crate::application::clock::after(self.policy.takeover_delay());
                self.leadership
                    .set_standby(entry.record.map(|record| record.instance_id));
            }
            LeaseEvent::Gone { .. } => {
                standby.seen = None;
                standby.next_attempt = Instant::now();
                self.leadership.set_standby(None);
            }
        }
    }

    /// One try at the lease. Returns the term on success.
    async fn attempt(&self, standby: &mut Standby) -> Option<Term> {
        let record = LeaderRecord::new(self.instance_id.clone());
        let lease = self.policy.lease();
        let sent = Instant::now();
        // Bounded, so that a hanging store cannot keep the task from stopping. Should a
        // write time out yet land, the watch shows our record and we wait it out as
        // with anyone else's.
        let write = async {
            match standby.seen {
                None => self.store.try_acquire(&record, lease).await,
                Some(revision) => self.store.renew(&record, revision, lease).await,
            }
        };
        let outcome = match timeout(lease, write).await {
            Ok(outcome) => outcome,
            Err(_) => Err(crate::Error::new(
                ErrorKind::Timeout,
                "lease write timed out",
            )),
        };
        self.record("acquire", sent, Outcome::of(&outcome));
        match outcome {
            Ok(revision) => {
                // Renewals carry the token, so that readers of the lease can tell it.
                let mut record = record;
                record
                    .metadata
                    .insert(FENCING_TOKEN_KEY.to_owned(), revision.into());
                let valid_until = sent + self.policy.leader_window();
                self.leadership
                    .promote(revision, valid_until, &self.instance_id);
                self.set_leader_gauge(1);
                tracing::info!(instance = %self.instance_id, token = revision, "became leader");
                Some(Term {
                    token: revision,
                    revision,
                    record,
                    valid_until,
                    next_renew: sent + self.policy.renew_interval(),
                    last_error: None,
                })
            }
            Err(error) => {
                // Lost the race, or the holder renewed after all: the watch will tell us
                // the new state, which resets this plan.
                let wait = match error.kind() {
                    ErrorKind::AlreadyExists | ErrorKind::RevisionMismatch => {
                        self.policy.takeover_delay()
                    }
                    _ => {
                        tracing::debug!(%error, "lease attempt failed");
                        self.policy.renew_interval()
                    }
                };
                standby.next_attempt = crate::application::clock::after(wait);
                None
            }
        }
    }

    /// Leads until the term ends; returns the standby state to go on with.
    async fn lead(
        &self,
        mut term: Term,
        events: &mut Option<Events>,
        stop: &mut watch::Receiver<bool>,
    ) -> Standby {
        let reason = loop {
            if stopped(stop) {
                // Admit no more exclusive calls and let those running finish, still
                // renewing the lease: no standby may take over while they run. Then
                // hand over. (The component's drain timeout bounds the wait; a leader
                // stopped by it leaves the lease to expire.)
                self.leadership.close();
                loop {
                    tokio::select! {
                        biased;
                        () = self.leadership.idle() => break,
                        _ = sleep_until(term.valid_until) => break,
                        _ = sleep_until(term.next_renew) => {
                            if self.renew(&mut term).await.is_some() {
                                break;
                            }
                        }
                    }
                }
                self.leadership.demote(LossReason::Stopped);
                self.set_leader_gauge(0);
                self.release(term.revision).await;
                return Standby {
                    seen: None,
                    next_attempt: Instant::now(),
                };
            }
            if Instant::now() >= term.valid_until {
                break match term.last_error {
                    Some(_) => LossReason::RenewFailed,
                    None => LossReason::DemotedByClock,
                };
            }

            // Leader: the earliest of a stop, the end of the leader window (no renewal
            // got through in time), a watch event (someone else took the key, or it
            // vanished) and the next renewal. Events up to our own revision are our own
            // writes or older news and are skipped.
            let watch_next = async {
                match events.as_mut() {
                    Some(watch) => watch.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop_requested(stop) => continue,
                _ = sleep_until(term.valid_until) => continue,
                event = watch_next => match event {
                    Some(Ok(LeaseEvent::Put(entry))) if entry.revision > term.revision => {
                        let ours = entry.record.as_ref().map(|r| r.instance_id.as_str())
                            == Some(self.instance_id.as_str());
                        if !ours {
                            break LossReason::LeaseLost;
                        }
                    }
                    Some(Ok(LeaseEvent::Gone { revision })) if revision > term.revision => {
                        break LossReason::LeaseLost;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => *events = None,
                },
                _ = sleep_until(term.next_renew) => {
                    if let Some(reason) = self.renew(&mut term).await {
                        break reason;
                    }
                }
            }
        };

        self.leadership.demote(reason);
        self.set_leader_gauge(0);
        tracing::warn!(instance = %self.instance_id, token = term.token, ?reason, "lost leadership");
        Standby {
            seen: Some(term.revision),
            next_attempt: crate::application::clock::after(self.policy.takeover_delay()),
        }
    }

    /// Renews once, bounded by what is left of the leader window. Returns a reason when
    /// the term is over.
    async fn renew(&self, term: &mut Term) -> Option<LossReason> {
        let sent = Instant::now();
        term.next_renew = sent + self.policy.renew_interval();
        let left = term.valid_until.saturating_duration_since(sent);
        term.record = term.record.renewed();
        let renewal = self
            .store
            .renew(&term.record, term.revision, self.policy.lease());
        let renewed = timeout(left, renewal).await;
        let outcome = match &renewed {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(error)) if error.kind() == ErrorKind::RevisionMismatch => Outcome::Lost,
            Ok(Err(_)) => Outcome::Error,
            Err(_) => Outcome::Timeout,
        };
        self.record("renew", sent, outcome);
        match renewed {
            Ok(Ok(revision)) => {
                term.revision = revision;
                term.valid_until = sent + self.policy.leader_window();
                term.last_error = None;
                self.leadership.extend(term.valid_until);
                None
            }
            Ok(Err(error)) if error.kind() == ErrorKind::RevisionMismatch => {
                Some(LossReason::LeaseLost)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "lease renewal failed");
                term.last_error = Some(error);
                None
            }
            Err(_) => Some(LossReason::DemotedByClock),
        }
    }

    async fn release(&self, revision: u64) {
        let sent = Instant::now();
        let released = timeout(RELEASE_TIMEOUT, self.store.release(revision)).await;
        let outcome = match &released {
            Ok(result) => Outcome::of(result),
            Err(_) => Outcome::Timeout,
        };
        self.record("release", sent, outcome);
        match released {
            Ok(Ok(())) => tracing::info!(instance = %self.instance_id, "released leadership"),
            Ok(Err(error)) => tracing::debug!(%error, "lease release failed"),
            Err(_) => tracing::debug!("lease release timed out"),
        }
    }

    /// Counts one election step of `operation` started at `sent`.
    fn record(&self, operation: &str, sent: Instant, outcome: Outcome) {
        let group = self.leadership.group().to_string();
        let labels = [self.service.as_str(), group.as_str(), operation];
        if let Some(op) = metrics::op_if_enabled(OpKind::Election, &labels) {
            op.record(sent.elapsed(), outcome);
        }
    }

    fn set_leader_gauge(&self, value: i64) {
        let metrics = Metrics::global();
        if metrics.is_enabled() {
            let group = self.leadership.group().to_string();
            let labels = [
                self.service.as_str(),
                group.as_str(),
                self.instance_id.as_str(),
            ];
            metrics.gauge(GaugeKind::ElectionLeader, &labels).set(value);
        }
    }
}
