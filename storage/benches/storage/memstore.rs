//! The memory store benchmark: apply throughput of Puts, alone and next to a reader.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use islab_storage::{Command, MemStore, Request, WriteId};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use crate::{KEY_LEN, Run, VALUE_LEN, fresh_puts, key, put};

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

pub fn memstore_apply(c: &mut Criterion, run: &Run) {
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
