//! Arguments of `islab bench`.

use clap::{Args, ValueEnum};

use super::client_args::ConsistencyArg;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to run: put, get, mixed (get and put by --read-ratio) or scan.
    #[arg(value_enum)]
    pub workload: BenchWorkload,

    /// The system under load: an IsLabDB cluster, or an etcd cluster at --endpoints (through
    /// the etcd-client crate; needs an islab built with `--features etcd`).
    #[arg(long, value_enum, default_value_t = BenchTarget::Islab)]
    pub target: BenchTarget,

    /// Operations in flight (closed loop). With --rate, the most in flight at once.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,

    /// Independent clients the in-flight operations are spread over: each its own SDK
    /// `Client` (own connections, routing cache and coalescer) or etcd client, as separate
    /// application processes would be. 1: every operation shares one client (whose SDK then
    /// gathers for the server). At most --clients.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,

    /// Open loop: start this many operations per second, whatever the latency.
    #[arg(long)]
    pub rate: Option<u64>,

    /// How long to measure (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = super::values::parse_duration)]
    pub duration: std::time::Duration,

    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,

    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,

    /// Distinct keys the workload touches.
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,

    /// How keys are picked from the keyspace.
    #[arg(long, value_enum, default_value_t = BenchDistribution::Uniform)]
    pub distribution: BenchDistribution,

    /// Consistency of gets and scans.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub read_consistency: ConsistencyArg,

    /// Keys per request: above 1, each put request is a Batch of this many puts, split by
    /// shard (one atomic batch per shard the keys fall in), and each get request a GetMany of
    /// this many keys, split by shard (the SDK's `get_many`).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// IsLabDB: requests of one shard the SDK keeps in flight before further calls gather
    /// into the next Batch or GetMany (`ClientConfig::max_in_flight_per_shard`).
    #[arg(long, default_value_t = 1)]
    pub in_flight_per_shard: usize,

    /// Share of gets in the mixed workload (0.0 to 1.0).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,

    /// Keys per scan page.
    #[arg(long, default_value_t = 100)]
    pub scan_limit: u32,

    /// Do not write the keyspace before a get, mixed or scan run.
    #[arg(long)]
    pub no_prefill: bool,

    /// No progress bar (it also hides itself when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchTarget {
    Islab,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchWorkload {
    Put,
    Get,
    Mixed,
    Scan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchDistribution {
    Uniform,
    /// Zipf with exponent 0.99 (a few hot keys, a long tail).
    Zipf,
}
