//! The election logic against an in-memory lease store, on tokio's paused clock: the
//! timing rules (who may lead when) checked exactly, without a server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::elector::Elector;
use super::leadership::{Leadership, LeadershipEvent, LossReason};
use super::policy::FailoverPolicy;
use crate::domain::election::{GroupName, LeaderRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::election::{LeaseEntry, LeaseEvent, LeaseStore};

/// A lease key with revisions, TTLs and a watch, like the KV bucket.
struct FakeStore {
    state: Mutex<State>,
    events: broadcast::Sender<LeaseEvent>,
}

#[derive(Default)]
struct State {
    sequence: u64,
    last: u64,
    current: Option<(LeaseEntry, Instant)>,
    /// Renewals of this instance never complete (a stalled leader).
    stalled: Option<String>,
}

impl FakeStore {
    fn new() -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        let store = Arc::new(FakeStore {
            state: Mutex::new(State::default()),
            events,
        });
        // The server's expiry, with an expiry marker for watchers.
        let ticker = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let mut state = ticker.state.lock().unwrap();
                if state
                    .current
                    .as_ref()
                    .is_some_and(|(_, at)| Instant::now() >= *at)
                {
                    ticker.gone(&mut state);
                }
            }
        });
        store
    }

    /// A put with a TTL: a new revision, announced to watchers.
    fn write(&self, state: &mut State, record: &LeaderRecord, ttl: Duration) -> u64 {
        state.sequence += 1;
        state.last = state.sequence;
        let entry = LeaseEntry {
            revision: state.sequence,
            record: Some(record.clone()),
        };
        state.current = Some((entry.clone(), Instant::now() + ttl));
        let _ = self.events.send(LeaseEvent::Put(entry));
        state.sequence
    }

    /// A delete or expiry marker.
    fn gone(&self, state: &mut State) {
        state.sequence += 1;
        state.last = state.sequence;
        state.current = None;
        let _ = self.events.send(LeaseEvent::Gone {
            revision: state.sequence,
        });
    }

    fn stall(&self, instance: &str) {
        self.state.lock().unwrap().stalled = Some(instance.to_owned());
    }
}

#[async_trait]
impl LeaseStore for FakeStore {
    async fn try_acquire(&self, record: &LeaderRecord, ttl: Duration) -> Result<u64> {
        let mut state = self.state.lock().unwrap();
        if state.current.is_some() {
            return Err(Error::new(ErrorKind::AlreadyExists, "held"));
        }
        Ok(self.write(&mut state, record, ttl))
    }

    async fn renew(&self, record: &LeaderRecord, revision: u64, ttl: Duration) -> Result<u64> {
        let stalled = self.state.lock().unwrap().stalled.clone();
        if stalled.as_deref() == Some(record.instance_id.as_str()) {
            std::future::pending::<()>().await;
        }
        let mut state = self.state.lock().unwrap();
        if state.last != revision {
            return Err(Error::new(ErrorKind::RevisionMismatch, "changed"));
        }
        Ok(self.write(&mut state, record, ttl))
    }

    async fn release(&self, revision: u64) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        if state.last != revision {
            return Err(Error::new(ErrorKind::RevisionMismatch, "changed"));
        }
        self.gone(&mut state);
        Ok(())
    }

    async fn current(&self) -> Result<Option<LeaseEntry>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .current
            .as_ref()
            .map(|(e, _)| e.clone()))
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseEvent>>> {
        let state = self.state.lock().unwrap();
        let first: Vec<Result<LeaseEvent>> = state
            .current
            .as_ref()
            .map(|(e, _)| Ok(LeaseEvent::Put(e.clone())))
            .into_iter()
            .collect();
        let receiver = self.events.subscribe();
        let later = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((Ok(event), receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream::iter(first).chain(later).boxed())
    }
}

struct Instance {
    leadership: Leadership,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn start(store: &Arc<FakeStore>, id: &str, policy: FailoverPolicy) -> Instance {
    let leadership = Leadership::new(GroupName::default());
    let elector = Elector {
        store: store.clone(),
        leadership: leadership.clone(),
        policy,
        instance_id: id.to_owned(),
        service: "svc".to_owned(),
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(elector.run(stop_rx));
    Instance {
        leadership,
        stop,
        task,
    }
}

/// Lets `total` pass on the paused clock, checking every millisecond that never two
/// instances lead at once.
async fn run_for(instances: &[&Instance], total: Duration) {
    let end = Instant::now() + total;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let leading = instances
            .iter()
            .filter(|i| i.leadership.is_leader())
            .count();
        assert!(leading <= 1, "two leaders at once");
    }
}

#[tokio::test(start_paused = true)]
async fn one_leader_then_takeover_after_a_crash() {
    let store = FakeStore::new();
    let policy = FailoverPolicy::balanced();
    let a = start(&store, "a", policy);
    run_for(&[&a], Duration::from_millis(50)).await;
    let b = start(&store, "b", policy);
    let c = start(&store, "c", policy);
    run_for(&[&a, &b, &c], Duration::from_secs(3)).await;
    assert!(a.leadership.is_leader());
    let first = a.leadership.fencing_token().unwrap();

    // A crash: no release, no more renewals.
    a.task.abort();
    let crashed = Instant::now();
    let mut taken = None;
    while taken.is_none() {
        run_for(&[&b, &c], Duration::from_millis(1)).await;
        if b.leadership.is_leader() || c.leadership.is_leader() {
            taken = Some(crashed.elapsed());
        }
    }
    let taken = taken.unwrap();
    // A standby waits the takeover delay after the last renewal it saw.
    assert!(
        taken <= policy.takeover_delay() + Duration::from_millis(20),
        "{taken:?}"
    );
    assert!(
        taken + policy.renew_interval() >= policy.takeover_delay(),
        "{taken:?}"
    );
    let token = b
        .leadership
        .fencing_token()
        .or(c.leadership.fencing_token())
        .unwrap();
    assert!(token > first);
    run_for(&[&b, &c], Duration::from_secs(3)).await;
}

#[tokio::test(start_paused = true)]
async fn stalled_leader_steps_down_before_a_standby_takes_over() {
    for policy in [
        FailoverPolicy::aggressive(),
        FailoverPolicy::balanced(),
        FailoverPolicy::conservative(),
    ] {
        let store = FakeStore::new();
        let a = start(&store, "a", policy);
        run_for(&[&a], Duration::from_millis(50)).await;
        let b = start(&store, "b", policy);
        run_for(&[&a, &b], Duration::from_secs(2)).await;
        assert!(a.leadership.is_leader());
        let mut events = a.leadership.events();

        // Renewals hang: the leader must stop by its own clock, and `run_for` checks
        // at every millisecond that the standby does not lead before that.
        store.stall("a");
        run_for(&[&a, &b], policy.takeover_delay() * 3).await;
        assert!(!a.leadership.is_leader());
        assert!(b.leadership.is_leader());
        assert!(matches!(
            events.recv().await.unwrap(),
            LeadershipEvent::Lost {
                reason: LossReason::DemotedByClock,
                ..
            }
        ));
        let _ = a.stop.send(true);
        let _ = b.stop.send(true);
    }
}

#[tokio::test(start_paused = true)]
async fn stopped_leader_hands_over_at_once() {
    let store = FakeStore::new();
    let policy = FailoverPolicy::conservative();
    let a = start(&store, "a", policy);
    run_for(&[&a], Duration::from_millis(50)).await;
    let b = start(&store, "b", policy);
    run_for(&[&a, &b], Duration::from_secs(1)).await;
    let mut events = a.leadership.events();

    a.stop.send(true).unwrap();
    a.task.await.unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        LeadershipEvent::Lost {
            token: 1,
            reason: LossReason::Stopped
        }
    );
    let stopped = Instant::now();
    while !b.leadership.is_leader() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(stopped.elapsed() <= Duration::from_millis(5));
}
