//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use islab_storage::{LogRecord, Result, Wal};

/// A deterministic payload for (group, index, term): tests can check contents bit-exactly.
pub fn payload(group: u64, index: u64, term: u64) -> Bytes {
    let len = 1 + ((group * 31 + index * 17 + term) % 200) as usize;
    let mut v = Vec::with_capacity(len);
    for i in 0..len {
        v.push((group as u8) ^ (index as u8).wrapping_mul(7) ^ (term as u8) ^ (i as u8));
    }
    Bytes::from(v)
}

pub fn entry(group: u64, index: u64, term: u64) -> LogRecord {
    LogRecord {
        term,
        index,
        payload: payload(group, index, term),
    }
}

/// Appends and waits for the durability callback.
pub fn append_durable(wal: &Wal, group: u64, entries: Vec<LogRecord>) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    wal.append(group, entries, move |r| {
        let _ = tx.send(r);
    })?;
    rx.recv_timeout(Duration::from_secs(30))
        .expect("durability callback never ran")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Checks what recovery left of `group`: a contiguous log from its purge point, every entry
/// exactly as [`entry`] made it (nothing invented, nothing torn), and nothing acknowledged up to
/// `acked` (the highest acknowledged index, 0 for none) missing. `ctx` names the run.
pub fn verify_group(wal: &Wal, group: u64, acked: u64, ctx: &str) {
    let floor = wal.log_state(group).purged.map_or(0, |p| p.index);
    let present = wal.read(group, 0..u64::MAX).unwrap();
    for (k, e) in present.iter().enumerate() {
        assert_eq!(
            e.index,
            floor + 1 + k as u64,
            "{ctx}: group {group} has a hole"
        );
        assert_eq!(
            *e,
            entry(group, e.index, 1),
            "{ctx}: group {group} entry {}",
            e.index
        );
    }
    let last = present.last().map_or(floor, |e| e.index);
    assert!(
        acked <= last,
        "{ctx}: acknowledged entry {acked} of group {group} lost (last {last})"
    );
}
