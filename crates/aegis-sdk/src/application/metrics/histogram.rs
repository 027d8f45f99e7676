//! A latency histogram of fixed size: log-linear buckets for percentiles, and the
//! Prometheus buckets counted exactly beside them.
//!
//! Memory never grows with traffic: 976 fine buckets (16 per power of two, so any
//! percentile is known within 1/16 = 6.25% of the value) and 19 Prometheus buckets, all
//! atomics allocated once. Recording is a handful of relaxed atomic operations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Enough fine buckets for any u64 nanoseconds.
const FINE_BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// The upper bounds (seconds) of the Prometheus buckets; `+Inf` follows.
pub(crate) const PROMETHEUS_BOUNDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
const PROMETHEUS_BOUNDS_NANOS: [u64; 18] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// Durations recorded into fixed buckets.
pub(crate) struct Histogram {
    sum_nanos: AtomicU64,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
    fine: Box<[AtomicU64]>,
    prometheus: Box<[AtomicU64]>,
}

/// What a [`Histogram`] holds at one moment.
#[derive(Debug, Clone)]
pub(crate) struct HistogramView {
    pub(crate) count: u64,
    pub(crate) sum_nanos: u64,
    pub(crate) min_nanos: u64,
    pub(crate) max_nanos: u64,
    fine: Vec<u64>,
    /// Per Prometheus bucket (the last is `+Inf`), not cumulative.
    pub(crate) prometheus: Vec<u64>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Histogram {
            sum_nanos: AtomicU64::new(0),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
            fine: zeros(FINE_BUCKETS),
            prometheus: zeros(PROMETHEUS_BOUNDS.len() + 1),
        }
    }

    pub(crate) fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.fine[fine_index(nanos)].fetch_add(1, Ordering::Relaxed);
        let coarse = PROMETHEUS_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.prometheus[coarse].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        // A plain load first: once the range settles, new extremes are rare, and the
        // read-modify-write (a compare-and-swap loop) is skipped.
        if nanos < self.min_nanos.load(Ordering::Relaxed) {
            self.min_nanos.fetch_min(nanos, Ordering::Relaxed);
        }
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    pub(crate) fn view(&self) -> HistogramView {
        let load = |cells: &[AtomicU64]| {
            cells
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        let fine = load(&self.fine);
        // The count is the buckets' sum: one atomic less per record, and always
        // consistent with the percentiles.
        let count = fine.iter().sum();
        HistogramView {
            count,
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
            min_nanos: self.min_nanos.load(Ordering::Relaxed),
            max_nanos: self.max_nanos.load(Ordering::Relaxed),
            fine,
            prometheus: load(&self.prometheus),
        }
    }
}

impl HistogramView {
    /// The `q`-quantile (0 to 1), as the middle of its bucket clamped to the observed
    /// range; so quantiles never decrease with `q` and stay within min and max.
    pub(crate) fn quantile_nanos(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.fine.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = fine_range(index);
                let middle = low + (high - low) / 2;
                return middle.clamp(self.min_nanos, self.max_nanos.max(self.min_nanos));
            }
        }
        self.max_nanos
    }
}

/// The fine bucket of a value: exact below 16 ns, then 16 buckets per power of two.
fn fine_index(nanos: u64) -> usize {
    if nanos < SUB {
        return nanos as usize;
    }
    let exponent = 63 - nanos.leading_zeros(); // >= SUB_BITS
    let mantissa = (nanos >> (exponent - SUB_BITS)) & (SUB - 1);
    ((exponent - SUB_BITS + 1) as usize) * SUB as usize + mantissa as usize
}

/// The values (inclusive) a fine bucket holds.
fn fine_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, index);
    }
    let exponent = index / SUB - 1 + u64::from(SUB_BITS);
    let mantissa = index % SUB;
    let width = 1u64 << (exponent - u64::from(SUB_BITS));
    let low = (1u64 << exponent) + mantissa * width;
    (low, low.saturating_add(width - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for nanos in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            1000,
            123_456_789,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let index = fine_index(nanos);
            assert!(index < FINE_BUCKETS);
            let (low, high) = fine_range(index);
            assert!(low <= nanos && nanos <= high, "{nanos} in {low}..={high}");
            // Within 1/16 of the value.
            assert!((high - low) <= nanos / 16 + 1);
        }
        for index in 1..FINE_BUCKETS {
            assert_eq!(fine_range(index).0, fine_range(index - 1).1 + 1);
        }
    }

    #[test]
    fn quantiles_are_ordered_and_within_range() {
        let histogram = Histogram::new();
        for micros in 1..=1000u64 {
            histogram.record(Duration::from_micros(micros));
        }
        let view = histogram.view();
        assert_eq!(view.count, 1000);
        let (p50, p90, p99) = (
            view.quantile_nanos(0.5),
            view.quantile_nanos(0.9),
            view.quantile_nanos(0.99),
        );
        assert!(view.min_nanos <= p50 && p50 <= p90 && p90 <= p99 && p99 <= view.max_nanos);
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 / 16.0;
        assert!(near(p50, 500_000), "{p50}");
        assert!(near(p90, 900_000), "{p90}");
        assert!(near(p99, 990_000), "{p99}");
        // 100 us and below: 100 values; 1 ms and below: all.
        assert_eq!(view.prometheus[0], 100);
        assert_eq!(view.prometheus[..4].iter().sum::<u64>(), 1000);
    }
}
