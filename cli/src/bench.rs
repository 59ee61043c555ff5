//! `islab bench`: a load generator that says what it measured.
//!
//! ```text
//! closed loop (--clients N):  N tasks, each: pick op → send → wait → record latency → repeat
//! open loop (--rate R):       a scheduler starts op i at t0 + i/R (at most --clients in flight);
//!                             latency counts from when op i was due, not when it got a slot
//! ```
//!
//! `--connections N` spreads the tasks over N independent clients (each its own SDK `Client`:
//! connections, routing cache and coalescer; or its own etcd client), task i on client
//! i mod N, as N application processes would load a cluster; the default is one client
//! shared by every task (one connection per node). Latencies go into HDR
//! histograms per operation kind (microseconds, 3 significant digits); the report names every
//! setting, the cluster's durability mode included, so a number can always be traced back.
//!
//! `--target etcd` (feature `etcd`) sends the same operations to an etcd cluster instead
//! (`bench/etcd.rs`): same loops, keys, values, histograms and report, so the two systems are
//! measured by one load generator (`bench/compare-etcd.sh`).

//!
//! Modules: `workload` (what is sent), `tally` (what is measured), `report` (what is printed),
//! `target` (where it is sent: IsLabDB, or etcd through `etcd`).

#[cfg(feature = "etcd")]
mod etcd;
mod report;
mod tally;
mod target;
mod workload;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use islab_client::ReadConsistency;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::Zipf;

use self::report::{Report, print_report};
use self::tally::{Tally, record};
use self::target::{Target, TargetInfo};
use self::workload::{Kind, Workload};
use crate::Outcome;
use crate::cli::{
    BenchArgs, BenchDistribution, BenchWorkload, ConsistencyArg, GlobalArgs, WriteOut,
};

pub fn run(
    args: &BenchArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    if args.key_size < 8 {
        bail!("--key-size must be at least 8 bytes, got {}", args.key_size);
    }
    let digits = u32::try_from(args.key_size - 1).unwrap_or(u32::MAX).min(19);
    if args.keyspace == 0 || (digits < 19 && args.keyspace > 10u64.pow(digits)) {
        bail!(
            "--keyspace {} does not fit keys of {} bytes",
            args.keyspace,
            args.key_size
        );
    }
    if args.clients == 0 || args.batch == 0 {
        bail!("--clients and --batch must be at least 1");
    }
    if args.connections == 0 || args.connections > args.clients {
        bail!(
            "--connections must be between 1 and --clients ({}), got {}",
            args.clients,
            args.connections
        );
    }
    if args.batch as u64 > args.keyspace {
        bail!(
            "--batch {} needs at least as many keys in --keyspace (got {}): a batch's keys are distinct",
            args.batch,
            args.keyspace
        );
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!(
            "--read-ratio must be between 0 and 1, got {}",
            args.read_ratio
        );
    }
    if args.duration.is_zero() {
        bail!("--duration must be above zero");
    }
    if args.rate == Some(0) {
        bail!("--rate must be above zero");
    }
    let zipf = match args.distribution {
        BenchDistribution::Uniform => None,
        BenchDistribution::Zipf => {
            Some(Zipf::new(args.keyspace as f64, 0.99).context("zipf over the keyspace")?)
        }
    };
    let mut value = vec![0u8; args.value_size];
    SmallRng::seed_from_u64(7).fill(&mut value[..]);
    let workload = Arc::new(Workload {
        kind: args.workload,
        key_size: args.key_size,
        value: Bytes::from(value),
        keyspace: args.keyspace,
        zipf,
        consistency: match args.read_consistency {
            ConsistencyArg::Linearizable => ReadConsistency::Linearizable,
            ConsistencyArg::Serializable => ReadConsistency::Serializable,
        },
        batch: args.batch,
        read_ratio: args.read_ratio,
        scan_limit: args.scan_limit,
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let mut targets = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            targets.push(Target::connect(args, global).await?);
        }
        measure(args, targets, workload).await
    })?;
    print_report(args, global, &report, format, out)?;
    Ok(Outcome::Clean)
}

async fn measure(
    args: &BenchArgs,
    clients: Vec<Target>,
    workload: Arc<Workload>,
) -> Result<Report> {
    let TargetInfo {
        system,
        durability,
        voters: nodes,
    } = clients[0].info().await?;

    let mut prefilled = 0;
    if args.workload != BenchWorkload::Put && !args.no_prefill {
        prefilled = prefill(&clients[0], &workload, args.clients).await?;
    }

    let done = Arc::new(AtomicU64::new(0));
    let bar = progress(args);
    let started = Instant::now();
    let deadline = started + args.duration;
    let ticker = {
        let bar = bar.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!("{} ops", done.load(Ordering::Relaxed)));
            }
        })
    };
    let keys = Arc::new(AtomicU64::new(0));
    let tally = match args.rate {
        None => closed_loop(args.clients, &clients, &workload, deadline, &done, &keys).await,
        Some(rate) => {
            open_loop(
                rate,
                args.clients,
                &clients,
                &workload,
                deadline,
                &done,
                &keys,
            )
            .await
        }
    };
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok(Report {
        system,
        durability,
        nodes,
        prefilled,
        elapsed,
        requests: done.load(Ordering::Relaxed),
        keys: keys.load(Ordering::Relaxed),
        tally,
    })
}

fn progress(args: &BenchArgs) -> indicatif::ProgressBar {
    if args.quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(args.duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Writes every key of the keyspace once (in batches of 100), so reads find something.
async fn prefill(client: &Target, workload: &Arc<Workload>, clients: usize) -> Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.clamp(1, 32) {
        let client = client.clone();
        let workload = workload.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(100, Ordering::Relaxed);
                if start >= workload.keyspace {
                    return anyhow::Ok(());
                }
                let end = (start + 100).min(workload.keyspace);
                let items = (start..end)
                    .map(|i| (workload.key(i), workload.value.clone()))
                    .collect();
                client
                    .put_all(items)
                    .await
                    .map_err(anyhow::Error::msg)
                    .context("prefilling the keyspace")?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(workload.keyspace)
}

async fn closed_loop(
    tasks_n: usize,
    clients: &[Target],
    workload: &Arc<Workload>,
    deadline: Instant,
    done: &Arc<AtomicU64>,
    keys: &Arc<AtomicU64>,
) -> Tally {
    let mut tasks = Vec::new();
    for worker in 0..tasks_n {
        let client = clients[worker % clients.len()].clone();
        let workload = workload.clone();
        let done = done.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(worker as u64);
            let mut tally = Tally::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (kind, result) = workload.one(&client, &mut rng).await;
                record(&mut tally, kind, t.elapsed(), result, &done, &keys);
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            total.merge(tally);
        }
    }
    total
}

async fn open_loop(
    rate: u64,
    max_in_flight: usize,
    clients: &[Target],
    workload: &Arc<Workload>,
    deadline: Instant,
    done: &Arc<AtomicU64>,
    keys: &Arc<AtomicU64>,
) -> Tally {
    // Operations report to one collector: a histogram per operation would cost far more
    // memory than the operation itself.
    let (results, mut incoming) =
        tokio::sync::mpsc::unbounded_channel::<(Kind, Duration, Result<u64, String>)>();
    let collector = {
        let done = done.clone();
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut tally = Tally::new();
            while let Some((kind, latency, result)) = incoming.recv().await {
                record(&mut tally, kind, latency, result, &done, &keys);
            }
            tally
        })
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    loop {
        let due = start + interval.mul_f64(i as f64);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        while running.try_join_next().is_some() {}
        let client = clients[(i % clients.len() as u64) as usize].clone();
        let workload = workload.clone();
        let results = results.clone();
        running.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(i);
            let (kind, result) = workload.one(&client, &mut rng).await;
            // Latency from when it was due: waiting for a slot is part of it.
            let _ = results.send((kind, due.elapsed(), result));
            drop(permit);
        });
        i += 1;
    }
    while running.join_next().await.is_some() {}
    drop(results);
    collector.await.unwrap_or_else(|_| Tally::new())
}
