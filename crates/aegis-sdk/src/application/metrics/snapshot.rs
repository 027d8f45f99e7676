//! A copy of the metrics at one moment, for the program to read.

use std::time::Duration;

use super::{all_series, HistogramView, Metrics};

/// Counters, gauges and timings at one moment, under their Prometheus names
/// (`aegis_rpc_server_requests_total`, `aegis_rpc_server_duration_seconds`, ...).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Counters, one per label combination (including `outcome`).
    pub counters: Vec<Sample<u64>>,
    /// Gauges (in-flight operations, leadership).
    pub gauges: Vec<Sample<i64>>,
    /// Timings, one per label combination (without `outcome`).
    pub timings: Vec<Sample<Timing>>,
}

/// One series: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<T> {
    /// The metric's name.
    pub name: String,
    /// Its labels, in the metric's label order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: T,
}

impl<T> Sample<T> {
    /// The value of label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name && labels.iter().all(|(n, v)| self.label(n) == Some(*v))
    }
}

/// A timing's summary. Percentiles come from buckets 1/16 of the value wide, clamped to
/// the observed range: they never decrease from p50 to p99 and stay within min and max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// How many operations were timed.
    pub count: u64,
    /// Their mean duration.
    pub mean: Duration,
    /// The shortest.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

impl Timing {
    fn from_view(view: &HistogramView) -> Timing {
        if view.count == 0 {
            return Timing::default();
        }
        Timing {
            count: view.count,
            mean: Duration::from_nanos(view.sum_nanos / view.count),
            min: Duration::from_nanos(view.min_nanos),
            max: Duration::from_nanos(view.max_nanos),
            p50: Duration::from_nanos(view.quantile_nanos(0.50)),
            p90: Duration::from_nanos(view.quantile_nanos(0.90)),
            p99: Duration::from_nanos(view.quantile_nanos(0.99)),
        }
    }
}

impl MetricsSnapshot {
    /// The sum of the counters called `name` whose labels include all of `labels`.
    ///
    /// ```
    /// # let snapshot = aegis_sdk::application::metrics::Metrics::global().snapshot();
    /// let failed = snapshot.counter(
    ///     "aegis_rpc_server_requests_total",
    ///     &[("service", "orders"), ("outcome", "error")],
    /// );
    /// # assert_eq!(failed, 0);
    /// ```
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .filter(|s| s.matches(name, labels))
            .map(|s| s.value)
            .sum()
    }

    /// The sum of the gauges called `name` whose labels include all of `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> i64 {
        self.gauges
            .iter()
            .filter(|s| s.matches(name, labels))
            .map(|s| s.value)
            .sum()
    }

    /// The first timing called `name` whose labels include all of `labels`.
    pub fn timing(&self, name: &str, labels: &[(&str, &str)]) -> Option<Timing> {
        self.timings
            .iter()
            .find(|s| s.matches(name, labels))
            .map(|s| s.value)
    }
}

pub(super) fn take(metrics: &Metrics) -> MetricsSnapshot {
    let (ops, gauges) = all_series(metrics);
    let mut snapshot = MetricsSnapshot::default();
    for op in ops {
        let kind = op.kind();
        let labels: Vec<(String, String)> = kind
            .label_names()
            .iter()
            .zip(op.labels())
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        for (outcome, count) in op.outcome_counts().filter(|(_, n)| *n > 0) {
            let mut labels = labels.clone();
            labels.push(("outcome".to_owned(), outcome.as_str().to_owned()));
            snapshot.counters.push(Sample {
                name: format!("{}_total", kind.counter_name()),
                labels,
                value: count,
            });
        }
        if let Some(name) = kind.in_flight_name() {
            snapshot.gauges.push(Sample {
                name: name.to_owned(),
                labels: labels.clone(),
                value: op.in_flight(),
            });
        }
        snapshot.timings.push(Sample {
            name: format!("{}_seconds", kind.duration_name()),
            labels,
            value: Timing::from_view(&op.timing()),
        });
    }
    for gauge in gauges {
        let kind = gauge.kind();
        snapshot.gauges.push(Sample {
            name: kind.name().to_owned(),
            labels: kind
                .label_names()
                .iter()
                .zip(gauge.labels())
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
            value: gauge.value(),
        });
    }
    snapshot
}
