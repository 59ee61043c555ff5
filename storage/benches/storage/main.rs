//! Criterion benchmarks of the storage engine: the numbers docs/benchmarks.md reports.
//!
//! Each benchmark prints the settings it runs with (durability, sizes, concurrency) and a
//! summary line of its own next to criterion's estimate, because the targets are stated in
//! units criterion does not print (entries per fsync, framing bytes, p99 latency).
//!
//! ```text
//! wal_append_sync      8 groups x 32 appends in flight, sync durability, Put 16 B / 128 B
//! wal_framing          bytes on disk per entry beyond key and value (computed, not timed)
//! memstore_apply       Put over 1M keys, one thread: re-applied, fresh, via apply_request;
//!                      and with a reader thread doing `get`
//! checkpoint           write and load N keys (ISLAB_BENCH_KEYS, default 1M); p99 apply
//!                      latency while a checkpoint is written vs without
//! wal_recovery         reopen a WAL holding 1M entries (page cache warm, then cold)
//! ```
//!
//! Files go to `ISLAB_BENCH_DIR` (default: the system temp dir); it must be on the real disk,
//! not tmpfs, or the fsync numbers mean nothing. Under `cargo test --benches` (criterion's
//! test mode) every size shrinks so the target only proves it runs.

//!
//! # Layout
//!
//! - `main.rs` (this file) — how the run was invoked (`Run`), `main`, the workload.
//! - `wal.rs` — `wal_append_sync`, `wal_framing`, `wal_recovery`.
//! - `memstore.rs` — `memstore_apply`.
//! - `checkpoint.rs` — `checkpoint` and the apply latency under a checkpoint.

mod checkpoint;
mod memstore;
mod wal;

use std::path::PathBuf;
use std::thread;

use bytes::Bytes;
use criterion::Criterion;
use islab_storage::{Command, codec};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use checkpoint::checkpoint;
use memstore::memstore_apply;
use wal::{wal_append_sync, wal_framing, wal_recovery};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 128;

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
