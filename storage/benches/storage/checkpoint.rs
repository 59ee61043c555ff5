//! The checkpoint benchmarks: write and load N keys, and what a checkpoint being written does
//! to the latency of the applies that go on meanwhile.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use islab_storage::{Checkpoint, CheckpointMeta, Command, LogPos, MemStore};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{KEY_LEN, Run, VALUE_LEN, put};

fn meta(at: u64) -> CheckpointMeta {
    CheckpointMeta {
        group: 1,
        last_applied: Some(LogPos { term: 1, index: at }),
        membership: Bytes::new(),
        snapshot_id: format!("bench-{at}"),
    }
}

pub fn checkpoint(c: &mut Criterion, run: &Run) {
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
         fsync + rename, load = open + verify + fill a new MemStore (one reading thread, {} \
         decoding); dir {}",
        started.elapsed().as_secs_f64(),
        thread::available_parallelism()
            .map_or(2, |p| p.get())
            .max(2),
        dir.path().display(),
    );

    // One untimed write first, so `-- checkpoint/load` has a file to load when the filter
    // leaves the write benchmark out.
    let scan = store.begin_checkpoint(n).expect("begin checkpoint");
    Checkpoint::write(&path, &meta(n), scan).expect("write checkpoint");

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
    // Each load timed on its own: the first one in the process also pays for the pages the
    // store is built in (a restarting node loads once, into a fresh process).
    let mut load_times: Vec<Duration> = Vec::new();
    group.bench_function(BenchmarkId::new("load", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let loaded = Checkpoint::open(&path)
                    .and_then(|c| c.load())
                    .expect("load checkpoint");
                let took = start.elapsed();
                total += took;
                load_times.push(took);
                assert_eq!(loaded.len() as u64, n);
                drop(loaded); // not timed: freeing the store is not part of loading it
            }
            total
        })
    });
    group.finish();
    // Either benchmark may be filtered out: report what ran.
    let rate = |each: Duration| {
        format!(
            "{:.3} s ({:.0} keys/s)",
            each.as_secs_f64(),
            n as f64 / each.as_secs_f64()
        )
    };
    let write = match writes {
        0 => "not run".to_string(),
        1 => format!("{}, 1 run", rate(write_time)),
        runs => format!("{}, {runs} runs", rate(write_time / runs)),
    };
    let load = match load_times.split_first() {
        None => "not run".to_string(),
        Some((first, [])) => format!("{}, 1 run", rate(*first)),
        Some((first, later)) => format!(
            "first in the process {}, later {} on average of {} runs",
            rate(*first),
            rate(later.iter().sum::<Duration>() / later.len() as u32),
            later.len()
        ),
    };
    println!(
        "checkpoint summary: {n} keys, file {:.1} MiB ({:.1} B per key); write {write}; \
         load {load}",
        size as f64 / (1 << 20) as f64,
        size as f64 / n as f64,
    );
    if run.wants("checkpoint_apply_latency") {
        checkpoint_apply_latency(&store, n, &path);
    }
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
