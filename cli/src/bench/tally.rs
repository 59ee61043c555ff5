//! What the workers measured: a latency histogram per operation kind (microseconds, 3
//! significant digits) and the errors, merged into one tally when the run ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::workload::{KINDS, Kind};

pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// What one worker measured.
pub(super) struct Tally {
    pub(super) latency: Vec<Histogram<u64>>,
    pub(super) errors: u64,
    pub(super) last_error: Option<String>,
}

impl Tally {
    pub(super) fn new() -> Tally {
        Tally {
            latency: KINDS.iter().map(|_| histogram()).collect(),
            errors: 0,
            last_error: None,
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            a.add(b).expect("same bounds");
        }
        self.errors += other.errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

pub(super) fn record(
    tally: &mut Tally,
    kind: Kind,
    latency: Duration,
    result: Result<u64, String>,
    done: &AtomicU64,
    keys: &AtomicU64,
) {
    match result {
        Ok(n) => {
            let micros = latency.as_micros().max(1) as u64;
            let _ = tally.latency[kind.index()].record(micros.min(120_000_000));
            done.fetch_add(1, Ordering::Relaxed);
            keys.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            tally.errors += 1;
            tally.last_error = Some(e);
        }
    }
}
