//! Metrics of the process: every RPC (both sides), event publish and handling, command
//! (sent and run), KV operation, registry heartbeat and election step, counted by
//! outcome and timed.
//!
//! Metrics are **off** until [`Metrics::enable`] is called; while off, each recording
//! point costs one relaxed atomic load. They are kept per process, like the Python SDK's
//! metrics and like a Prometheus endpoint: one [`Metrics::global`] registry, read with
//! [`Metrics::snapshot`] or scraped over HTTP with
//! [`serve_prometheus`](crate::adapters::prometheus::serve_prometheus).
//!
//! Memory is bounded by the number of label combinations (services, methods, buckets,
//! ...), never by traffic: each timing is a fixed-size histogram. Handled events are
//! labelled by the subscription's pattern, not by the event's type, so that publishers
//! cannot add series to a subscriber. As a safety net, each metric kind keeps at most
//! [`MAX_SERIES_PER_KIND`] label combinations: beyond them, new combinations are counted
//! together in one series whose labels are all `_other` (a warning is logged once per
//! kind when that starts).
//!
//! # Names
//!
//! Names follow Prometheus conventions (base unit seconds, counters end in `_total`),
//! with labels `service`, `method`, `outcome` as for messaging systems:
//!
//! | metric | labels |
//! |---|---|
//! | `aegis_rpc_server_requests_total`, `aegis_rpc_server_duration_seconds`, `aegis_rpc_server_in_flight` | `service`, `method` (+ `outcome`) |
//! | `aegis_rpc_client_requests_total`, `aegis_rpc_client_duration_seconds`, `aegis_rpc_client_in_flight` | `service`, `method` (+ `outcome`) |
//! | `aegis_events_published_total`, `aegis_events_publish_duration_seconds` | `domain`, `event_type` (+ `outcome`) |
//! | `aegis_events_handled_total`, `aegis_events_handle_duration_seconds`, `aegis_events_handle_in_flight` | `service`, `pattern` (the subscription's, as `order.*`) (+ `outcome`) |
//! | `aegis_commands_sent_total`, `aegis_commands_send_duration_seconds` | `service`, `command` (+ `outcome`) |
//! | `aegis_commands_handled_total`, `aegis_commands_handle_duration_seconds`, `aegis_commands_handle_in_flight` | `service`, `command` (+ `outcome`) |
//! | `aegis_kv_operations_total`, `aegis_kv_operation_duration_seconds` | `bucket`, `operation` (+ `outcome`) |
//! | `aegis_registry_heartbeats_total`, `aegis_registry_heartbeat_duration_seconds` | `service` (+ `outcome`) |
//! | `aegis_election_operations_total`, `aegis_election_operation_duration_seconds` | `service`, `group`, `operation` (+ `outcome`) |
//! | `aegis_election_leader` (gauge, 1 while this process leads) | `service`, `group`, `instance` |
//!
//! `outcome` is one of `ok`, `error`, `timeout`, `no_responders`, `not_active`,
//! `cancelled`, `conflict`, `lost`; a series appears once it has counted something.
//!
//! # Examples
//! ```
//! use aegis_sdk::application::metrics::Metrics;
//!
//! Metrics::enable();
//! let snapshot = Metrics::global().snapshot();
//! let calls = snapshot.counter("aegis_rpc_client_requests_total", &[("service", "echo")]);
//! assert_eq!(calls, 0);
//! ```

mod histogram;
mod kinds;
mod kv;
mod snapshot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

pub(crate) use histogram::{HistogramView, PROMETHEUS_BOUNDS};
pub(crate) use kinds::{GaugeKind, OpKind, Outcome};
pub use kv::metered;
pub use snapshot::{MetricsSnapshot, Sample, Timing};

use histogram::Histogram;

/// How many label combinations one metric kind keeps; further ones are counted in one
/// series whose labels are all [`OTHER`]. See the [module docs](self).
pub const MAX_SERIES_PER_KIND: usize = 1000;

/// The value of every label of the series that gathers a kind's label combinations
/// beyond [`MAX_SERIES_PER_KIND`].
pub const OTHER: &str = "_other";

/// The process's metrics registry. See the [module docs](self).
pub struct Metrics {
    enabled: AtomicBool,
    series: RwLock<Registry>,
}

/// The series by key (kind name and label values), and how many each kind has.
#[derive(Default)]
struct Registry {
    series: HashMap<String, Series>,
    /// Label combinations per kind name, not counting the kind's [`OTHER`] series.
    per_kind: HashMap<&'static str, usize>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// The registry of this process.
    pub fn global() -> &'static Metrics {
        GLOBAL.get_or_init(Metrics::new)
    }

    fn new() -> Metrics {
        Metrics {
            enabled: AtomicBool::new(false),
            series: RwLock::new(Registry::default()),
        }
    }

    /// Turns recording on for the whole process (it is off by default).
    pub fn enable() {
        Self::global().enabled.store(true, Ordering::Relaxed);
    }

    /// Turns recording off; what was recorded stays readable.
    pub fn disable() {
        Self::global().enabled.store(false, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> MetricsSnapshot {
        snapshot::take(self)
    }

    /// The operation series for `kind` and its label values, created on first use.
    pub(crate) fn op(&self, kind: OpKind, labels: &[&str]) -> Arc<Op> {
        match self.lookup(SeriesKind::Op(kind), labels) {
            Series::Op(op) => op,
            Series::Gauge(_) => unreachable_series(),
        }
    }

    /// The gauge series for `kind` and its label values, created on first use.
    pub(crate) fn gauge(&self, kind: GaugeKind, labels: &[&str]) -> Arc<Gauge> {
        match self.lookup(SeriesKind::Gauge(kind), labels) {
            Series::Gauge(gauge) => gauge,
            Series::Op(_) => unreachable_series(),
        }
    }

    fn lookup(&self, kind: SeriesKind, labels: &[&str]) -> Series {
        // Looked up first among the series this thread used last, compared label by
        // label: the common case, a hot series, takes no lock, no hash, no allocation
        // and builds no key. The key is built (in a reused buffer) only on a miss.
        thread_local! {
            static LOCAL: std::cell::RefCell<Local> = const {
                std::cell::RefCell::new(Local { key: String::new(), recent: Vec::new() })
            };
        }
        LOCAL.with_borrow_mut(|local| {
            let Local { key, recent } = local;
            // The registry's address goes with each entry, so that two registries (as
            // in unit tests) never share a remembered series.
            let owner = std::ptr::from_ref(self) as usize;
            let name = kind.name();
            if let Some(hit) = recent.iter().find(|hit| hit.is(owner, name, labels)) {
                return hit.series.clone();
            }
            key.clear();
            push_key(key, kind, labels);
            let series = self.shared(kind, labels, key);
            if recent.len() == Local::RECENT {
                recent.remove(0);
            }
            recent.push(Recent {
                owner,
                name,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                series: series.clone(),
            });
            series
        })
    }

    fn shared(&self, kind: SeriesKind, labels: &[&str], key: &str) -> Series {
        if let Some(series) = self.read().series.get(key) {
            return series.clone();
        }
        let mut registry = self.series.write().unwrap_or_else(|e| e.into_inner());
        let Registry { series, per_kind } = &mut *registry;
        if let Some(existing) = series.get(key) {
            return existing.clone();
        }
        let count = per_kind.entry(kind.name()).or_default();
        if *count < MAX_SERIES_PER_KIND {
            *count += 1;
            let new = Series::new(kind, labels);
            series.insert(key.to_owned(), new.clone());
            return new;
        }
        // Past the cap: one series gathers the rest of this kind.
        let others = vec![OTHER; labels.len()];
        let mut other_key = String::new();
        push_key(&mut other_key, kind, &others);
        series
            .entry(other_key)
            .or_insert_with(|| {
                tracing::warn!(
                    metric = kind.name(),
                    limit = MAX_SERIES_PER_KIND,
                    "too many label combinations; further ones are counted under `{OTHER}`"
                );
                Series::new(kind, &others)
            })
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.series.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Appends the key of a series: its kind's name, then each label value, separated by a
/// character that names do not contain.
fn push_key(key: &mut String, kind: SeriesKind, labels: &[&str]) {
    key.push_str(kind.name());
    for label in labels {
        key.push('\u{1f}');
        key.push_str(label);
    }
}

/// A thread's lookup buffer and its most recently used series, each with the address
/// of its registry.
struct Local {
    key: String,
    recent: Vec<Recent>,
}

/// A series a thread used, with what it was asked for by.
struct Recent {
    owner: usize,
    name: &'static str,
    labels: Vec<String>,
    series: Series,
}

impl Recent {
    fn is(&self, owner: usize, name: &'static str, labels: &[&str]) -> bool {
        self.owner == owner
            && self.name == name
            && self.labels.len() == labels.len()
            && self.labels.iter().zip(labels).all(|(a, b)| a == b)
    }
}

impl Local {
    /// How many series a thread remembers.
    const RECENT: usize = 16;
}

fn unreachable_series() -> ! {
    // Keys start with the kind's name, and op and gauge names differ.
    panic!("a metrics key names a series of another type")
}

/// `Some(op)` when metrics are on: the shape of every recording point.
pub(crate) fn op_if_enabled(kind: OpKind, labels: &[&str]) -> Option<Arc<Op>> {
    let metrics = Metrics::global();
    metrics.is_enabled().then(|| metrics.op(kind, labels))
}

/// Times `work` as one operation of `kind` when metrics are on, with its outcome taken
/// from the result.
pub(crate) async fn timed<T>(
    kind: OpKind,
    labels: &[&str],
    work: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    observed(op_if_enabled(kind, labels), work).await
}

/// Times `work` as one operation of the series `op`, if any, with its outcome taken
/// from the result.
pub(crate) async fn observed<T>(
    op: Option<Arc<Op>>,
    work: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    let Some(op) = op else {
        return work.await;
    };
    let started = op.start();
    let result = work.await;
    op.finish(started, Outcome::of(&result));
    result
}

#[derive(Clone)]
enum Series {
    Op(Arc<Op>),
    Gauge(Arc<Gauge>),
}

impl Series {
    fn new(kind: SeriesKind, labels: &[&str]) -> Series {
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        match kind {
            SeriesKind::Op(kind) => Series::Op(Arc::new(Op {
                kind,
                labels,
                outcomes: Default::default(),
                in_flight: AtomicI64::new(0),
                timing: Histogram::new(),
            })),
            SeriesKind::Gauge(kind) => Series::Gauge(Arc::new(Gauge {
                kind,
                labels,
                value: AtomicI64::new(0),
            })),
        }
    }
}

#[derive(Clone, Copy)]
enum SeriesKind {
    Op(OpKind),
    Gauge(GaugeKind),
}

impl SeriesKind {
    fn name(self) -> &'static str {
        match self {
            SeriesKind::Op(kind) => kind.counter_name(),
            SeriesKind::Gauge(kind) => kind.name(),
        }
    }
}

/// One series of an operation kind: outcome counters, in-flight count and timing.
pub(crate) struct Op {
    kind: OpKind,
    labels: Vec<String>,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    in_flight: AtomicI64,
    timing: Histogram,
}

impl Op {
    /// Marks the start of one operation; pass the instant to [`Op::finish`].
    pub(crate) fn start(&self) -> Instant {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Instant::now()
    }

    /// Counts one operation started at `started` and ended with `outcome`.
    pub(crate) fn finish(&self, started: Instant, outcome: Outcome) {
        self.finish_after(started.elapsed(), outcome);
    }

    /// As [`Op::finish`], with the time already measured by the caller.
    pub(crate) fn finish_after(&self, elapsed: Duration, outcome: Outcome) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.record(elapsed, outcome);
    }

    /// Counts one operation that took `elapsed`, not counted as in flight.
    pub(crate) fn record(&self, elapsed: Duration, outcome: Outcome) {
        self.timing.record(elapsed);
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn kind(&self) -> OpKind {
        self.kind
    }

    pub(crate) fn labels(&self) -> &[String] {
        &self.labels
    }

    pub(crate) fn outcome_counts(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::ALL
            .iter()
            .map(|&o| (o, self.outcomes[o as usize].load(Ordering::Relaxed)))
    }

    pub(crate) fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn timing(&self) -> HistogramView {
        self.timing.view()
    }
}

/// One gauge series.
pub(crate) struct Gauge {
    kind: GaugeKind,
    labels: Vec<String>,
    value: AtomicI64,
}

impl Gauge {
    pub(crate) fn set(&self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
    }

    pub(crate) fn kind(&self) -> GaugeKind {
        self.kind
    }

    pub(crate) fn labels(&self) -> &[String] {
        &self.labels
    }

    pub(crate) fn value(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Every op and gauge series, for exposition.
pub(crate) fn all_series(metrics: &Metrics) -> (Vec<Arc<Op>>, Vec<Arc<Gauge>>) {
    let mut ops = Vec::new();
    let mut gauges = Vec::new();
    for series in metrics.read().series.values() {
        match series {
            Series::Op(op) => ops.push(op.clone()),
            Series::Gauge(gauge) => gauges.push(gauge.clone()),
        }
    }
    ops.sort_by(|a, b| (a.kind as u8, &a.labels).cmp(&(b.kind as u8, &b.labels)));
    gauges.sort_by(|a, b| (a.kind as u8, &a.labels).cmp(&(b.kind as u8, &b.labels)));
    (ops, gauges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, kind: OpKind) -> usize {
        all_series(metrics)
            .0
            .iter()
            .filter(|op| op.kind() == kind)
            .count()
    }

    #[test]
    fn label_combinations_beyond_the_cap_share_one_other_series() {
        let metrics = Metrics::new();
        for i in 0..MAX_SERIES_PER_KIND {
            let method = format!("m{i}");
            metrics
                .op(OpKind::RpcServer, &["svc", &method])
                .record(Duration::from_millis(1), Outcome::Ok);
        }
        assert_eq!(count(&metrics, OpKind::RpcServer), MAX_SERIES_PER_KIND);

        // 500 more combinations: all in one `_other` series, each counted.
        for i in 0..500 {
            let method = format!("extra{i}");
            metrics
                .op(OpKind::RpcServer, &["svc", &method])
                .record(Duration::from_millis(1), Outcome::Error);
        }
        let (ops, _) = all_series(&metrics);
        let server: Vec<_> = ops
            .iter()
            .filter(|op| op.kind() == OpKind::RpcServer)
            .collect();
        assert_eq!(server.len(), MAX_SERIES_PER_KIND + 1);
        let other: Vec<_> = server
            .iter()
            .filter(|op| op.labels() == [OTHER, OTHER])
            .collect();
        assert_eq!(other.len(), 1);
        let errors: u64 = other[0]
            .outcome_counts()
            .filter(|(o, _)| *o == Outcome::Error)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(errors, 500);
        assert_eq!(other[0].timing().count, 500);

        // A combination known before the cap keeps its own series.
        metrics
            .op(OpKind::RpcServer, &["svc", "m7"])
            .record(Duration::from_millis(1), Outcome::Ok);
        let m7 = all_series(&metrics)
            .0
            .into_iter()
            .find(|op| op.labels() == ["svc", "m7"])
            .expect("m7's series");
        assert_eq!(m7.timing().count, 2);

        // The cap is per kind: other kinds still get their own series.
        metrics
            .op(OpKind::Kv, &["bucket", "put"])
            .record(Duration::from_millis(1), Outcome::Ok);
        assert_eq!(count(&metrics, OpKind::Kv), 1);
        let snapshot = snapshot::take(&metrics);
        assert_eq!(
            snapshot.counter(
                "aegis_kv_operations_total",
                &[("bucket", "bucket"), ("operation", "put")]
            ),
            1
        );
        assert_eq!(
            snapshot.counter(
                "aegis_rpc_server_requests_total",
                &[("service", OTHER), ("method", OTHER), ("outcome", "error")]
            ),
            500
        );
    }

    #[test]
    fn two_registries_never_share_a_series() {
        let (one, two) = (Metrics::new(), Metrics::new());
        one.op(OpKind::Kv, &["b", "get"])
            .record(Duration::from_millis(1), Outcome::Ok);
        two.op(OpKind::Kv, &["b", "get"])
            .record(Duration::from_millis(1), Outcome::Ok);
        for metrics in [&one, &two] {
            let snapshot = snapshot::take(metrics);
            assert_eq!(
                snapshot.counter("aegis_kv_operations_total", &[("bucket", "b")]),
                1
            );
        }
    }
}
