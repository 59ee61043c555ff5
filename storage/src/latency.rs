//! A latency histogram anyone can record into and read without a lock.
//!
//! Fixed buckets, counted the way Prometheus histograms count. The WAL writer records each
//! `fdatasync` (one per group commit) into one: etcd's `wal_fsync_duration_seconds` is the
//! metric its operators alert on first (a disk too slow for consensus), and this is ours. The
//! node records its gRPC calls into others. Recording is a bucket search over 17 bounds and
//! three relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 100 µs to about 8 s, doubling from 1 ms
/// (etcd's buckets, with three finer ones below a millisecond for NVMe disks).
pub const LATENCY_BUCKETS_MICROS: [u64; 17] = [
    100, 250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000,
    1_024_000, 2_048_000, 4_096_000, 8_192_000,
];

/// Counts per bucket (not cumulative; the last slot counts what is above every bound).
/// `Default` is empty.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A reading of the histogram, cumulative as Prometheus wants it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// (upper bound in microseconds, operations that took at most that long), for each bound in
    /// [`LATENCY_BUCKETS_MICROS`]; `count` covers the rest (`+Inf`).
    pub buckets: Vec<(u64, u64)>,
    pub sum_micros: u64,
    pub count: u64,
}

impl LatencyHistogram {
    /// Counts one operation that took `took`.
    pub fn record(&self, took: Duration) {
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let slot = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram now. Read while others record, the buckets and the count may be
    /// one operation apart; the count is read last so it is never below the buckets' total.
    pub fn read(&self) -> Latency {
        let mut total = 0;
        let buckets = LATENCY_BUCKETS_MICROS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (*bound, total)
            })
            .collect();
        let sum_micros = self.sum_micros.load(Ordering::Relaxed);
        let count = self
            .count
            .load(Ordering::Relaxed)
            .max(total + self.buckets[LATENCY_BUCKETS_MICROS.len()].load(Ordering::Relaxed));
        Latency {
            buckets,
            sum_micros,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = LatencyHistogram::default();
        for micros in [50, 100, 101, 3_000, 20_000_000] {
            h.record(Duration::from_micros(micros));
        }
        let r = h.read();
        let at = |bound: u64| r.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(100), 2, "50 and 100 µs are within 100 µs");
        assert_eq!(at(250), 3);
        assert_eq!(at(2_000), 3);
        assert_eq!(at(4_000), 4);
        assert_eq!(at(8_192_000), 4, "20 s is above every bound");
        assert_eq!(r.count, 5);
        assert_eq!(r.sum_micros, 50 + 100 + 101 + 3_000 + 20_000_000);
        assert!(r.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
