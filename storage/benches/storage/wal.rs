//! The WAL benchmarks: durable appends under group commit, framing bytes, reopen time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use islab_storage::{
    Durability, GroupId, LogPos, LogRecord, Record, Request, Wal, WalConfig, WalStats, WriteId,
    codec,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::{KEY_LEN, Run, VALUE_LEN, put, put_payloads};

/// Raft groups appending to the one WAL.
const GROUPS: u64 = 8;
/// Appends each group keeps in flight: 8 x 32 = 256 concurrent appenders.
const WINDOW: u32 = 32;

fn stats_delta(after: WalStats, before: WalStats) -> (u64, u64, u64) {
    (
        after.entries_appended - before.entries_appended,
        after.fsyncs - before.fsyncs,
        after.batches - before.batches,
    )
}

/// Appends `per_group` entries to each group, each group keeping [`WINDOW`] appends in flight
/// (one submitter thread per group: Raft needs a group's indexes in order). Returns the time
/// from the first submission to the last callback.
fn append_window(wal: &Wal, next: &mut [u64], per_group: u64, payloads: &[Bytes]) -> Duration {
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    thread::scope(|s| {
        for (g, first) in next.iter().enumerate() {
            let (wal, first, failed) = (wal, *first, failed.clone());
            s.spawn(move || {
                let inflight = Arc::new(AtomicU32::new(0));
                let me = thread::current();
                for index in first..first + per_group {
                    while inflight.load(Ordering::Acquire) >= WINDOW {
                        thread::park();
                    }
                    inflight.fetch_add(1, Ordering::AcqRel);
                    let (inflight, me, failed) = (inflight.clone(), me.clone(), failed.clone());
                    let entry = LogRecord {
                        term: 1,
                        index,
                        payload: payloads[index as usize % payloads.len()].clone(),
                    };
                    wal.append(g as GroupId, vec![entry], move |r| {
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        // Wake the submitter when a slot frees in a full window, or at the end.
                        let before = inflight.fetch_sub(1, Ordering::AcqRel);
                        if before == WINDOW || before == 1 {
                            me.unpark();
                        }
                    })
                    .expect("append");
                }
                while inflight.load(Ordering::Acquire) > 0 {
                    thread::park();
                }
            });
        }
    });
    let elapsed = start.elapsed();
    assert!(!failed.load(Ordering::Relaxed), "a WAL append failed");
    for n in next.iter_mut() {
        *n += per_group;
    }
    elapsed
}

pub fn wal_append_sync(c: &mut Criterion, run: &Run) {
    let dir = run.tempdir("wal-append");
    let config = WalConfig {
        durability: Durability::Sync,
        ..Default::default()
    };
    let (wal, _) = Wal::open(dir.path(), config.clone()).expect("opening the WAL");
    let payloads = put_payloads(4096);
    println!(
        "\nwal_append_sync: durability {}, {GROUPS} groups x {WINDOW} appends in flight = {} \
         concurrent appenders ({GROUPS} submitter threads, one entry per append), payload = \
         bincode Put with {KEY_LEN} B key + {VALUE_LEN} B value = {} B, segment {} MiB, dir {}",
        config.durability,
        GROUPS as u32 * WINDOW,
        payloads[0].len(),
        config.segment_size >> 20,
        dir.path().display(),
    );

    let mut next = vec![1u64; GROUPS as usize];
    let before = wal.stats();
    let (mut total_entries, mut total_time) = (0u64, Duration::ZERO);
    let mut group = c.benchmark_group("wal_append_sync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(1));
    group.bench_function(
        BenchmarkId::new("put_16B_128B", format!("{GROUPS}x{WINDOW}")),
        |b| {
            b.iter_custom(|iters| {
                let per_group = iters.div_ceil(GROUPS);
                let t = append_window(&wal, &mut next, per_group, &payloads);
                // Keep the disk bounded: a purge lets the writer delete full segments.
                for (g, n) in next.iter().enumerate() {
                    wal.purge(
                        g as GroupId,
                        LogPos {
                            term: 1,
                            index: n - 1,
                        },
                    )
                    .expect("purge");
                }
                total_entries += per_group * GROUPS;
                total_time += t;
                // Report the time of `iters` entries at the rate of this run.
                t.mul_f64(iters as f64 / (per_group * GROUPS) as f64)
            })
        },
    );
    group.finish();
    wal.flush().expect("flush");
    let (entries, fsyncs, batches) = stats_delta(wal.stats(), before);
    println!(
        "wal_append_sync summary: {total_entries} entries in {:.2} s = {:.0} entries/s (target \
         >= 300000); WAL stats: {entries} entries, {fsyncs} fsyncs, {batches} writer batches, \
         {:.1} entries per fsync",
        total_time.as_secs_f64(),
        total_entries as f64 / total_time.as_secs_f64(),
        entries as f64 / fsyncs.max(1) as f64,
    );
    wal.shutdown().expect("shutdown");
}

/// Bytes on disk per entry beyond the key and value: computed from the framing, then checked
/// against what a fresh WAL really holds.
pub fn wal_framing(run: &Run) {
    let payloads = put_payloads(1);
    let payload = payloads[0].len();
    let kv = KEY_LEN + VALUE_LEN;
    println!(
        "\nwal_framing: Put with {KEY_LEN} B key + {VALUE_LEN} B value; bincode payload {payload} \
         B ({} B of it is not key or value)",
        payload - kv
    );
    let request = codec::encode(&Request {
        id: Some(WriteId {
            client: 0x9e37_79b9_7f4a_7c15,
            seq: 1_000,
        }),
        command: put(0, &mut SmallRng::seed_from_u64(1)),
    })
    .expect("encoding a Request");
    println!(
        "  (as a Request with a WriteId of a random 64-bit client, seq 1000, the payload is {} B: \
         +{} B before any Raft entry wrapper)",
        request.len(),
        request.len() - payload
    );
    for (label, group, term, index) in [
        ("small ids (group 3, term 2, index 1000)", 3, 2, 1000),
        ("index 2^21 (2M entries into a group)", 3, 2, 1 << 21),
        (
            "large ids (group 4096, term 1000, index 2^35)",
            4096,
            1000,
            1 << 35,
        ),
    ] {
        let frame = Record::entry_frame_len(group, term, index, payload);
        println!(
            "  {label}: frame {frame} B, overhead {} B per entry (target <= 24)",
            frame - kv
        );
    }

    let entries: u64 = if run.full { 200_000 } else { 2_000 };
    let dir = run.tempdir("wal-framing");
    let (wal, _) = Wal::open(
        dir.path(),
        WalConfig {
            durability: Durability::Async,
            ..Default::default()
        },
    )
    .expect("opening the WAL");
    let payloads = put_payloads(4096);
    let per_group = entries / GROUPS;
    for g in 0..GROUPS {
        for chunk in (1..=per_group).collect::<Vec<_>>().chunks(256) {
            let batch = chunk
                .iter()
                .map(|&index| LogRecord {
                    term: 1,
                    index,
                    payload: payloads[index as usize % payloads.len()].clone(),
                })
                .collect();
            wal.append(g, batch, |r| r.expect("append"))
                .expect("append");
        }
    }
    wal.flush().expect("flush");
    let stats = wal.stats();
    println!(
        "  measured: {} entries in {} segment(s), {} B on disk = {:.2} B per entry, overhead \
         {:.2} B per entry (segment headers included)",
        stats.entries_appended,
        stats.segments,
        stats.bytes,
        stats.bytes as f64 / stats.entries_appended as f64,
        stats.bytes as f64 / stats.entries_appended as f64 - kv as f64,
    );
    wal.shutdown().expect("shutdown");
}

/// Drops the page cache of every file in `dir` (`dd iflag=nocache count=0`: per file, no
/// root needed, nothing else on the machine is touched). False if dd is missing or refused.
fn drop_cache(dir: &Path) -> bool {
    let Ok(files) = std::fs::read_dir(dir) else {
        return false;
    };
    files.flatten().all(|f| {
        // Dirty pages cannot be dropped: write them back first.
        let _ = std::fs::File::open(f.path()).and_then(|file| file.sync_all());
        std::process::Command::new("dd")
            .arg(format!("if={}", f.path().display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub fn wal_recovery(c: &mut Criterion, run: &Run) {
    let n = run.recovery_entries;
    let dir = run.tempdir("wal-recovery");
    let config = WalConfig::default();
    let payloads = put_payloads(4096);
    {
        let (wal, _) = Wal::open(dir.path(), config.clone()).expect("opening the WAL");
        let per_group = n / GROUPS;
        for g in 0..GROUPS {
            let mut next = 1;
            while next <= per_group {
                let batch: Vec<LogRecord> = (next..=per_group.min(next + 1023))
                    .map(|index| LogRecord {
                        term: 1,
                        index,
                        payload: payloads[index as usize % payloads.len()].clone(),
                    })
                    .collect();
                next += batch.len() as u64;
                wal.append(g, batch, |r| r.expect("append"))
                    .expect("append");
            }
        }
        wal.flush().expect("flush");
        let s = wal.stats();
        println!(
            "\nwal_recovery: reopen a WAL of {} entries ({GROUPS} groups, {} B payloads), {} \
             segments, {:.1} MiB; every record's CRC is checked; dir {}",
            s.entries_appended,
            payloads[0].len(),
            s.segments,
            s.bytes as f64 / (1 << 20) as f64,
            dir.path().display(),
        );
        wal.shutdown().expect("shutdown");
    }
    let open = || {
        let start = Instant::now();
        let (wal, report) = Wal::open(dir.path(), config.clone()).expect("reopening the WAL");
        let t = start.elapsed();
        assert_eq!(report.entries, n, "recovery found every entry");
        (t, wal)
    };

    let mut group = c.benchmark_group("wal_recovery");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(n));
    group.bench_function(BenchmarkId::new("reopen_warm_cache", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (t, wal) = open();
                total += t;
                wal.shutdown().expect("shutdown"); // not timed
            }
            total
        })
    });
    group.finish();

    let mut cold = Vec::new();
    for _ in 0..if run.full { 3 } else { 1 } {
        if !drop_cache(dir.path()) {
            println!("wal_recovery cold: skipped (could not drop the page cache with dd)");
            return;
        }
        let (t, wal) = open();
        cold.push(t.as_secs_f64());
        wal.shutdown().expect("shutdown");
    }
    println!(
        "wal_recovery cold cache (segment files dropped from the page cache before each open): \
         {} runs, {} s (target <= 2 s)",
        cold.len(),
        cold.iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(" / "),
    );
}
