//! Criterion benchmarks of the storage engine: the numbers docs/benchmarks.md reports.
//!
//! Each benchmark prints the settings it runs with (durability, sizes, concurrency) and a
//! summary line of its own next to criterion's estimate, because the targets are stated in
//! units criterion does not print (entries per fsync, framing bytes, p99 latency).
//!
//! ```text
//! wal_append_sync      8 groups x 32 appends in flight, sync durability, Put 16 B / 128 B
//! wal_framing          bytes on disk per entry beyond key and value (computed, not timed)
//! memstore_apply       Put over 1M keys, one thread; and with a reader thread doing `get`
//! checkpoint           write and load N keys (ISLAB_BENCH_KEYS, default 1M); p99 apply
//!                      latency while a checkpoint is written vs without
//! wal_recovery         reopen a WAL holding 1M entries (page cache warm, then cold)
//! ```
//!
//! Files go to `ISLAB_BENCH_DIR` (default: the system temp dir); it must be on the real disk,
//! not tmpfs, or the fsync numbers mean nothing. Under `cargo test --benches` (criterion's
//! test mode) every size shrinks so the target only proves it runs.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use islab_storage::{
    Checkpoint, CheckpointMeta, Command, Durability, GroupId, LogPos, LogRecord, MemStore, Record,
    Request, Wal, WalConfig, WalStats, WriteId, codec,
};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 128;
/// Raft groups appending to the one WAL.
const GROUPS: u64 = 8;
/// Appends each group keeps in flight: 8 x 32 = 256 concurrent appenders.
const WINDOW: u32 = 32;

/// How this run was invoked: which benchmarks, how big.
struct Run {
    /// `cargo bench` (false under `cargo test --benches` or `--test`: tiny sizes).
    full: bool,
    filter: Option<String>,
    root: PathBuf,
    /// Keys of the checkpoint benchmark.
    checkpoint_keys: usize,
    /// Keys the memstore benchmark overwrites.
    memstore_keys: usize,
    /// Entries in the WAL the recovery benchmark reopens.
    recovery_entries: u64,
}

impl Run {
    fn from_env() -> Run {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|a| a == "--bench")
            && !args.iter().any(|a| a == "--test" || a == "--list");
        // The first positional argument is criterion's filter; skip the values of its options.
        let takes_value = [
            "--save-baseline",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--profile-time",
            "--plotting-backend",
            "--output-format",
            "--format",
            "--color",
            "-c",
        ];
        let mut filter = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if takes_value.contains(&a.as_str()) {
                it.next();
            } else if !a.starts_with('-') {
                filter = Some(a.clone());
                break;
            }
        }
        let checkpoint_keys = std::env::var("ISLAB_BENCH_KEYS")
            .ok()
            .map(|v| {
                v.replace('_', "")
                    .parse()
                    .expect("ISLAB_BENCH_KEYS: a number")
            })
            .unwrap_or(1_000_000);
        let root = std::env::var_os("ISLAB_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Run {
            full,
            filter,
            root,
            checkpoint_keys: if full { checkpoint_keys } else { 10_000 },
            memstore_keys: if full { 1_000_000 } else { 10_000 },
            recovery_entries: if full { 1_000_000 } else { 10_000 },
        }
    }

    /// Whether the benchmark group `name` can match the filter (a plain substring match; the
    /// filter proper is criterion's). Saves the expensive setup of groups that would not run.
    fn wants(&self, name: &str) -> bool {
        match &self.filter {
            None => true,
            Some(f) => name.contains(f.as_str()) || f.starts_with(name),
        }
    }

    fn tempdir(&self, what: &str) -> tempfile::TempDir {
        std::fs::create_dir_all(&self.root).expect("creating the bench dir");
        tempfile::Builder::new()
            .prefix(&format!("islab-bench-{what}-"))
            .tempdir_in(&self.root)
            .expect("creating a temp dir")
    }
}

fn main() {
    let run = Run::from_env();
    let mut c = Criterion::default().configure_from_args();
    println!(
        "islab-storage benches: dir {} ({} mode), {} CPUs",
        run.root.display(),
        if run.full { "bench" } else { "test" },
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if run.wants("wal_append_sync") {
        wal_append_sync(&mut c, &run);
    }
    if run.wants("wal_framing") {
        wal_framing(&run);
    }
    if run.wants("memstore_apply") {
        memstore_apply(&mut c, &run);
    }
    if run.wants("checkpoint") {
        checkpoint(&mut c, &run);
    }
    if run.wants("wal_recovery") {
        wal_recovery(&mut c, &run);
    }
    c.final_summary();
}

// ---------------------------------------------------------------------------------------------
// Workload

/// `key-000000000042`: exactly 16 bytes.
fn key(i: u64) -> Bytes {
    let k = format!("key-{i:012}");
    debug_assert_eq!(k.len(), KEY_LEN);
    Bytes::from(k)
}

fn value(rng: &mut SmallRng) -> Bytes {
    let mut v = vec![0u8; VALUE_LEN];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

fn put(i: u64, rng: &mut SmallRng) -> Command {
    Command::Put {
        key: key(i),
        value: value(rng),
        expires_at: None,
    }
}

/// Distinct encoded Put commands: what a Raft entry carries for a client write.
fn put_payloads(n: u64) -> Vec<Bytes> {
    let mut rng = SmallRng::seed_from_u64(1);
    (0..n)
        .map(|i| Bytes::from(codec::encode(&put(i, &mut rng)).expect("encoding a Put")))
        .collect()
}

fn stats_delta(after: WalStats, before: WalStats) -> (u64, u64, u64) {
    (
        after.entries_appended - before.entries_appended,
        after.fsyncs - before.fsyncs,
        after.batches - before.batches,
    )
}

// ---------------------------------------------------------------------------------------------
// wal_append_sync

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

fn wal_append_sync(c: &mut Criterion, run: &Run) {
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

// ---------------------------------------------------------------------------------------------
// wal_framing

/// Bytes on disk per entry beyond the key and value: computed from the framing, then checked
/// against what a fresh WAL really holds.
fn wal_framing(run: &Run) {
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

// ---------------------------------------------------------------------------------------------
// memstore_apply

/// `count` Puts of uniformly random keys among `keys`, each with its own freshly allocated
/// key and value (as decoding a log entry makes them), so an overwrite frees the old value.
fn fresh_puts(rng: &mut SmallRng, keys: u64, count: u64) -> Vec<Command> {
    (0..count)
        .map(|_| {
            let i = rng.random_range(0..keys);
            put(i, rng)
        })
        .collect()
}

/// Where the Puts of `memstore_apply` come from.
#[derive(Clone, Copy)]
enum Source {
    /// The same pre-built command per key, applied again and again: the value written is the
    /// one already there, so apply allocates and frees nothing. The map operation alone.
    Reapply,
    /// Freshly allocated commands of random keys (as decoding log entries makes them): each
    /// apply promotes the new key and value `Bytes` and frees the value it replaces.
    Fresh,
    /// As `Fresh`, wrapped in a [`Request`] with a [`WriteId`] (one of [`CLIENTS`] clients)
    /// and applied with `apply_request`, which also reads, decodes and rewrites the client's
    /// session: the path the Raft state machine takes for a client write.
    FreshRequest,
}

/// Clients whose write ids the `FreshRequest` variant cycles through.
const CLIENTS: u64 = 1024;

fn memstore_apply(c: &mut Criterion, run: &Run) {
    let n = run.memstore_keys as u64;
    let mut rng = SmallRng::seed_from_u64(2);
    let mut cmds: Vec<Command> = (0..n).map(|i| put(i, &mut rng)).collect();
    cmds.shuffle(&mut rng);
    let store = Arc::new(MemStore::new());
    let mut index = 0;
    for cmd in &cmds {
        index += 1;
        store.apply(index, cmd);
    }
    println!(
        "\nmemstore_apply: Put of {KEY_LEN} B key + {VALUE_LEN} B value over {n} existing keys in \
         random order, one apply thread, commands built beforehand (not timed); `reapply`: the \
         same command objects again (no allocation in apply); `fresh`: new commands of uniformly \
         random keys (apply allocates and frees like it will behind the Raft log); \
         `fresh_request`: the same through `apply_request` with a WriteId of one of {CLIENTS} \
         clients; `with_1_reader`: plus a thread doing `get` of random keys in a loop"
    );

    // A reader thread runs for the reader variants; only reads inside timed windows count.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reading = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop, reads, reading) =
            (store.clone(), stop.clone(), reads.clone(), reading.clone());
        let mut order: Vec<Bytes> = (0..n).map(key).collect();
        order.shuffle(&mut SmallRng::seed_from_u64(3));
        thread::spawn(move || {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if !reading.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                for _ in 0..256 {
                    let k = &order[done as usize % order.len()];
                    black_box(store.get(k));
                    done += 1;
                }
                reads.store(done, Ordering::Relaxed);
            }
        })
    };

    let mut group = c.benchmark_group("memstore_apply");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let mut pos = 0usize;
    let mut seqs = vec![0u64; CLIENTS as usize];
    for (source, with_reader) in [
        (Source::Reapply, false),
        (Source::Reapply, true),
        (Source::Fresh, false),
        (Source::Fresh, true),
        (Source::FreshRequest, false),
    ] {
        let name = format!(
            "put_{}{}",
            match source {
                Source::Reapply => "reapply",
                Source::Fresh => "fresh",
                Source::FreshRequest => "fresh_request",
            },
            if with_reader { "_with_1_reader" } else { "" }
        );
        reading.store(with_reader, Ordering::Relaxed);
        let (mut applied, mut apply_time, mut read_count) = (0u64, Duration::ZERO, 0u64);
        group.bench_function(name.as_str(), |b| {
            b.iter_custom(|iters| {
                let fresh = match source {
                    Source::Reapply => Vec::new(),
                    Source::Fresh | Source::FreshRequest => fresh_puts(&mut rng, n, iters),
                };
                let requests: Vec<Request> = match source {
                    Source::FreshRequest => fresh
                        .iter()
                        .enumerate()
                        .map(|(i, cmd)| {
                            let client = i as u64 % CLIENTS;
                            seqs[client as usize] += 1;
                            Request {
                                id: Some(WriteId {
                                    client: client.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                                    seq: seqs[client as usize],
                                }),
                                command: cmd.clone(),
                            }
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let r0 = reads.load(Ordering::Relaxed);
                let start = Instant::now();
                match source {
                    Source::Reapply => {
                        for _ in 0..iters {
                            index += 1;
                            black_box(store.apply(index, &cmds[pos]));
                            pos += 1;
                            if pos == cmds.len() {
                                pos = 0;
                            }
                        }
                    }
                    Source::Fresh => {
                        for cmd in &fresh {
                            index += 1;
                            black_box(store.apply(index, cmd));
                        }
                    }
                    Source::FreshRequest => {
                        for request in &requests {
                            index += 1;
                            black_box(store.apply_request(index, request));
                        }
                    }
                }
                let t = start.elapsed();
                read_count += reads.load(Ordering::Relaxed) - r0;
                drop((fresh, requests)); // not timed; the store now holds the only references
                applied += iters;
                apply_time += t;
                t
            })
        });
        if applied > 0 {
            let secs = apply_time.as_secs_f64();
            println!(
                "memstore_apply/{name} summary: {:.0} applies/s (target >= 3000000){}",
                applied as f64 / secs,
                if with_reader {
                    format!("; the reader did {:.0} gets/s", read_count as f64 / secs)
                } else {
                    String::new()
                }
            );
        }
    }
    group.finish();
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread");
}

// ---------------------------------------------------------------------------------------------
// checkpoint

fn meta(at: u64) -> CheckpointMeta {
    CheckpointMeta {
        group: 1,
        last_applied: Some(LogPos { term: 1, index: at }),
        membership: Bytes::new(),
        snapshot_id: format!("bench-{at}"),
    }
}

fn checkpoint(c: &mut Criterion, run: &Run) {
    let n = run.checkpoint_keys as u64;
    let dir = run.tempdir("checkpoint");
    let path = dir.path().join("bench.ckpt");
    let mut rng = SmallRng::seed_from_u64(4);
    let store = Arc::new(MemStore::new());
    let started = Instant::now();
    for i in 0..n {
        store.apply(i + 1, &put(i, &mut rng));
    }
    println!(
        "\ncheckpoint: {n} keys of {KEY_LEN} B key + {VALUE_LEN} B random value (set \
         ISLAB_BENCH_KEYS to scale), store filled in {:.2} s; write = scan + encode + lz4 + \
         fsync + rename, load = open + verify + fill a new MemStore; dir {}",
        started.elapsed().as_secs_f64(),
        dir.path().display(),
    );

    let mut group = c.benchmark_group("checkpoint");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(n));
    let (mut writes, mut write_time) = (0u32, Duration::ZERO);
    group.bench_function(BenchmarkId::new("write", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let scan = store.begin_checkpoint(n).expect("begin checkpoint");
                let ckpt = Checkpoint::write(&path, &meta(n), scan).expect("write checkpoint");
                total += start.elapsed();
                assert_eq!(ckpt.keys(), n);
            }
            writes += iters as u32;
            write_time += total;
            total
        })
    });
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let (mut loads, mut load_time) = (0u32, Duration::ZERO);
    group.bench_function(BenchmarkId::new("load", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let loaded = Checkpoint::open(&path)
                    .and_then(|c| c.load())
                    .expect("load checkpoint");
                total += start.elapsed();
                assert_eq!(loaded.len() as u64, n);
                drop(loaded); // not timed: freeing the store is not part of loading it
            }
            loads += iters as u32;
            load_time += total;
            total
        })
    });
    group.finish();
    if writes > 0 && loads > 0 {
        let w = write_time / writes;
        let l = load_time / loads;
        println!(
            "checkpoint summary: {n} keys, file {:.1} MiB ({:.1} B per key); write {:.3} s \
             ({:.0} keys/s), load {:.3} s ({:.0} keys/s)",
            size as f64 / (1 << 20) as f64,
            size as f64 / n as f64,
            w.as_secs_f64(),
            n as f64 / w.as_secs_f64(),
            l.as_secs_f64(),
            n as f64 / l.as_secs_f64(),
        );
    }
    checkpoint_apply_latency(&store, n, &path);
}

/// Per-apply durations in nanoseconds, summarised.
struct Latencies(Vec<u32>);

impl Latencies {
    fn summary(&mut self) -> String {
        let v = &mut self.0;
        v.sort_unstable();
        let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        format!(
            "{} applies, p50 {} ns, p99 {} ns, p99.9 {} ns, max {:.2} ms, {} over 1 ms",
            v.len(),
            q(0.50),
            q(0.99),
            q(0.999),
            *v.last().unwrap() as f64 / 1e6,
            v.iter().filter(|&&ns| ns > 1_000_000).count(),
        )
    }
}

/// Applies overwrites of random keys (all part of the image, so pre-images get saved) until
/// `until` says stop, timing each apply.
fn timed_applies(
    store: &MemStore,
    cmds: &[Command],
    index: &mut u64,
    mut until: impl FnMut(usize) -> bool,
) -> (Latencies, Duration) {
    let mut lat = Vec::with_capacity(8 << 20);
    let start = Instant::now();
    let mut i = 0;
    while !until(i) {
        *index += 1;
        let t = Instant::now();
        black_box(store.apply(*index, &cmds[i % cmds.len()]));
        lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        i += 1;
    }
    (Latencies(lat), start.elapsed())
}

fn checkpoint_apply_latency(store: &Arc<MemStore>, n: u64, path: &Path) {
    let mut rng = SmallRng::seed_from_u64(5);
    let cmds: Vec<Command> = (0..1_000_000.min(n))
        .map(|_| put(rng.random_range(0..n), &mut rng))
        .collect();
    let mut index = n + 1_000_000_000; // far above the keys' versions

    // During: a checkpoint of the state at `at` is written on another thread.
    let at = index;
    let done = Arc::new(AtomicBool::new(false));
    let (begun_tx, begun_rx) = std::sync::mpsc::channel();
    let writer = {
        let (store, done, path) = (store.clone(), done.clone(), path.to_path_buf());
        thread::spawn(move || {
            let start = Instant::now();
            let scan = store.begin_checkpoint(at).expect("begin checkpoint");
            begun_tx.send(()).expect("signal");
            let ckpt = Checkpoint::write(&path, &meta(at), scan).expect("write checkpoint");
            done.store(true, Ordering::Release);
            (ckpt.keys(), start.elapsed())
        })
    };
    // Every apply below runs under the capture.
    begun_rx.recv().expect("checkpoint writer started");
    let (mut during, during_time) =
        timed_applies(store, &cmds, &mut index, |_| done.load(Ordering::Acquire));
    let (keys, ckpt_time) = writer.join().expect("checkpoint writer");
    assert_eq!(
        keys, n,
        "the checkpoint holds exactly the image at its index"
    );

    // Baseline: the same number of applies with no checkpoint running.
    let count = during.0.len();
    let (mut baseline, baseline_time) = timed_applies(store, &cmds, &mut index, |i| i >= count);
    println!(
        "checkpoint_apply_latency: {n} keys, one apply thread overwriting random keys at full \
         speed, checkpoint written on a second thread ({:.2} s)",
        ckpt_time.as_secs_f64()
    );
    println!(
        "  baseline:            {:.0} applies/s; {}",
        baseline.0.len() as f64 / baseline_time.as_secs_f64(),
        baseline.summary()
    );
    println!(
        "  during a checkpoint: {:.0} applies/s; {}",
        during.0.len() as f64 / during_time.as_secs_f64(),
        during.summary()
    );
}

// ---------------------------------------------------------------------------------------------
// wal_recovery

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

fn wal_recovery(c: &mut Criterion, run: &Run) {
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
