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
//! (`bench_etcd.rs`): same loops, keys, values, histograms and report, so the two systems are
//! measured by one load generator (`bench/compare-etcd.sh`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use islab_client::ReadConsistency;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::json;

use crate::Outcome;
use crate::bench_target::{Target, TargetInfo};
use crate::cli::{
    BenchArgs, BenchDistribution, BenchWorkload, ConsistencyArg, GlobalArgs, WriteOut,
};
use crate::connect;

/// The operation kinds a run records separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Put,
    Get,
    Scan,
}

const KINDS: [Kind; 3] = [Kind::Put, Kind::Get, Kind::Scan];

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::Get => "get",
            Kind::Scan => "scan",
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// What one worker measured.
struct Tally {
    latency: Vec<Histogram<u64>>,
    errors: u64,
    last_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: KINDS.iter().map(|_| histogram()).collect(),
            errors: 0,
            last_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            a.add(b).expect("same bounds");
        }
        self.errors += other.errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

/// The workload's shape, shared by every worker.
struct Workload {
    kind: BenchWorkload,
    key_size: usize,
    value: Bytes,
    keyspace: u64,
    zipf: Option<Zipf<f64>>,
    consistency: ReadConsistency,
    batch: usize,
    read_ratio: f64,
    scan_limit: u32,
}

impl Workload {
    fn key(&self, index: u64) -> Bytes {
        let digits = self.key_size - 1;
        Bytes::from(format!("b{index:0>digits$}"))
    }

    fn pick(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            // Rank 1 is the hottest; spread the ranks over the keyspace so hot keys are not
            // neighbours.
            Some(z) => {
                let rank = z.sample(rng) as u64 - 1;
                rank.wrapping_mul(0x9e37_79b9_7f4a_7c15) % self.keyspace
            }
            None => rng.random_range(0..self.keyspace),
        }
    }

    /// `batch` different keys (a batch naming a key twice is refused by etcd, and would
    /// measure less than it says).
    fn distinct_keys(&self, rng: &mut SmallRng) -> Vec<Bytes> {
        let mut picked = std::collections::HashSet::with_capacity(self.batch);
        while picked.len() < self.batch {
            picked.insert(self.pick(rng));
        }
        picked.into_iter().map(|i| self.key(i)).collect()
    }

    /// Runs one operation; returns its kind and how many keys it touched.
    async fn one(&self, target: &Target, rng: &mut SmallRng) -> (Kind, Result<u64, String>) {
        let kind = match self.kind {
            BenchWorkload::Put => Kind::Put,
            BenchWorkload::Get => Kind::Get,
            BenchWorkload::Scan => Kind::Scan,
            BenchWorkload::Mixed => {
                if rng.random_bool(self.read_ratio) {
                    Kind::Get
                } else {
                    Kind::Put
                }
            }
        };
        let result = match kind {
            Kind::Put if self.batch > 1 => {
                let items = self
                    .distinct_keys(rng)
                    .into_iter()
                    .map(|k| (k, self.value.clone()))
                    .collect();
                target.put_all(items).await
            }
            Kind::Put => {
                target
                    .put(self.key(self.pick(rng)), self.value.clone())
                    .await
            }
            Kind::Get if self.batch > 1 => {
                target
                    .get_all(self.distinct_keys(rng), self.consistency)
                    .await
            }
            Kind::Get => target.get(self.key(self.pick(rng)), self.consistency).await,
            Kind::Scan => {
                target
                    .scan(self.key(self.pick(rng)), self.scan_limit, self.consistency)
                    .await
            }
        };
        (kind, result)
    }
}

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

struct Report {
    system: String,
    durability: String,
    nodes: usize,
    prefilled: u64,
    elapsed: Duration,
    requests: u64,
    keys: u64,
    tally: Tally,
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

fn record(
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

fn print_report(
    args: &BenchArgs,
    global: &GlobalArgs,
    r: &Report,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<()> {
    let secs = r.elapsed.as_secs_f64();
    let workload = format!("{:?}", args.workload).to_lowercase();
    let loop_kind = match args.rate {
        Some(rate) => format!(
            "open loop at {rate} ops/s, at most {} in flight",
            args.clients
        ),
        None => format!("closed loop, {} in flight", args.clients),
    };
    let loop_kind = format!(
        "{loop_kind} from {} independent client{}",
        args.connections,
        if args.connections == 1 { "" } else { "s" }
    );
    let distribution = format!("{:?}", args.distribution).to_lowercase();
    let consistency = format!("{:?}", args.read_consistency).to_lowercase();
    let per_kind: Vec<_> = KINDS
        .iter()
        .filter(|k| !r.tally.latency[k.index()].is_empty())
        .map(|k| (*k, &r.tally.latency[k.index()]))
        .collect();
    if format == WriteOut::Json {
        let latency: serde_json::Map<String, serde_json::Value> = per_kind
            .iter()
            .map(|(k, h)| {
                (
                    k.name().to_string(),
                    json!({
                        "count": h.len(),
                        "p50_us": h.value_at_quantile(0.50),
                        "p99_us": h.value_at_quantile(0.99),
                        "p999_us": h.value_at_quantile(0.999),
                        "max_us": h.max(),
                    }),
                )
            })
            .collect();
        let doc = json!({
            "settings": {
                "target": r.system,
                "workload": workload,
                "endpoints": connect::endpoints(global),
                "voters": r.nodes,
                "durability": r.durability,
                "clients": args.clients,
                "connections": args.connections,
                "rate": args.rate,
                "duration_s": args.duration.as_secs_f64(),
                "key_size": args.key_size,
                "value_size": args.value_size,
                "keyspace": args.keyspace,
                "distribution": distribution,
                "read_consistency": consistency,
                "batch": args.batch,
                "in_flight_per_shard": args.in_flight_per_shard,
                "read_ratio": args.read_ratio,
                "scan_limit": args.scan_limit,
                "prefilled": r.prefilled,
            },
            "elapsed_s": secs,
            "requests": r.requests,
            "requests_per_s": r.requests as f64 / secs,
            "keys": r.keys,
            "keys_per_s": r.keys as f64 / secs,
            "errors": r.tally.errors,
            "last_error": r.tally.last_error,
            "latency": latency,
        });
        serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "settings: target={}; workload={workload} {loop_kind}; duration={:.1}s; durability={} on {} voters; \
         key={} B value={} B keyspace={} ({distribution}); read-consistency={consistency}; \
         batch={}{}{}{}",
        r.system,
        args.duration.as_secs_f64(),
        r.durability,
        r.nodes,
        args.key_size,
        args.value_size,
        args.keyspace,
        args.batch,
        if r.system == "islab" {
            format!("; in-flight-per-shard={}", args.in_flight_per_shard)
        } else {
            String::new()
        },
        if args.workload == BenchWorkload::Mixed {
            format!("; read-ratio={}", args.read_ratio)
        } else {
            String::new()
        },
        if r.prefilled > 0 {
            format!("; prefilled {} keys", r.prefilled)
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "throughput: {:.0} requests/s ({:.0} keys/s), {} requests in {secs:.2}s, {} errors{}",
        r.requests as f64 / secs,
        r.keys as f64 / secs,
        r.requests,
        r.tally.errors,
        r.tally
            .last_error
            .as_ref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    )?;
    for (kind, h) in per_kind {
        writeln!(
            out,
            "{:<5} latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} ops)",
            kind.name(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(distribution: Option<Zipf<f64>>) -> Workload {
        Workload {
            kind: BenchWorkload::Mixed,
            key_size: 16,
            value: Bytes::from_static(b"v"),
            keyspace: 1000,
            zipf: distribution,
            consistency: ReadConsistency::Linearizable,
            batch: 1,
            read_ratio: 0.5,
            scan_limit: 10,
        }
    }

    #[test]
    fn a_batch_names_each_key_once() {
        let mut w = workload(Some(Zipf::new(1000.0, 0.99).unwrap()));
        w.batch = 200;
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..20 {
            let keys = w.distinct_keys(&mut rng);
            assert_eq!(keys.len(), 200);
            let set: std::collections::HashSet<_> = keys.iter().collect();
            assert_eq!(set.len(), 200, "no key twice in one batch");
        }
    }

    #[test]
    fn keys_have_the_asked_size_and_stay_in_the_keyspace() {
        let w = workload(Some(Zipf::new(1000.0, 0.99).unwrap()));
        assert_eq!(w.key(7).len(), 16);
        assert_eq!(w.key(999).len(), 16);
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: Vec<u64> = (0..10_000).map(|_| w.pick(&mut rng)).collect();
        assert!(picks.iter().all(|p| *p < 1000));
        // Zipf: the hottest key is picked far more often than a uniform 1/1000.
        let mut counts = std::collections::HashMap::new();
        for p in &picks {
            *counts.entry(*p).or_insert(0) += 1;
        }
        assert!(*counts.values().max().unwrap() > 500, "{counts:?}");
        let u = workload(None);
        assert!((0..1000).all(|_| u.pick(&mut rng) < 1000));
    }
}
