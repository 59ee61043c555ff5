//! Arguments of the commands that run nodes: `islab server` and `islab playground`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::values::parse_mapping;

/// `islab playground`.
#[derive(Debug, Args)]
pub struct PlaygroundArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub nodes: u64,

    /// Where the nodes keep their data and logs (reused if it holds an earlier playground).
    #[arg(long, value_name = "DIR", default_value = "islab-playground")]
    pub dir: PathBuf,

    /// Port of node 1; node i listens on base-port + i - 1.
    #[arg(long, value_name = "PORT", default_value_t = 7379)]
    pub base_port: u16,

    /// Largest value the nodes accept, in bytes (passed to `islab server`). [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub max_value_bytes: Option<usize>,

    /// When the nodes acknowledge a write (passed to `islab server`). [default: sync]
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,

    /// Shards of a new cluster (3 replicas each, fewer with fewer nodes); ignored when the
    /// directory holds an earlier playground.
    #[arg(long, default_value_t = islab_node::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shards: u32,
}

/// `islab server`. Every setting is optional here so that an unset flag falls through to the
/// environment, the config file, then the default.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file with node settings (keys as in `NodeConfig`, kebab-case).
    #[arg(long, env = "ISLAB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This node's id (1 or more, unique in the cluster). [default: 1]
    #[arg(long, env = "ISLAB_ID")]
    pub id: Option<u64>,

    /// Data directory (WAL, checkpoints, catalog). [default: islab-data]
    #[arg(long, env = "ISLAB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on. [default: 127.0.0.1:7379]
    #[arg(long, env = "ISLAB_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<std::net::SocketAddr>,

    /// Serve /metrics (Prometheus), /livez and /readyz over plain HTTP here (a port apart
    /// from the gRPC one). [default: off]
    #[arg(long, env = "ISLAB_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// host:port other nodes and clients use to reach this node. [default: the listen address]
    #[arg(long, env = "ISLAB_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,

    /// Comma-separated `advertised=host:port` pairs: where this node dials a peer that the
    /// cluster names by an address this machine cannot use as it is (NAT, a port forward, a
    /// test's proxy). Peers not listed are dialled at their advertised address.
    #[arg(
        long,
        env = "ISLAB_PEER_ADDRESS_MAP",
        value_delimiter = ',',
        value_name = "ADVERTISED=HOST:PORT",
        value_parser = parse_mapping
    )]
    pub peer_address_map: Vec<(String, String)>,

    /// When a write is acknowledged: sync (fsynced) or async (written, fsynced every few ms).
    /// [default: sync]
    #[arg(long, env = "ISLAB_DURABILITY", value_enum)]
    pub durability: Option<DurabilityArg>,

    /// What WAL recovery does with a corrupt record. [default: tolerate-tail-corruption]
    #[arg(long, env = "ISLAB_WAL_RECOVERY", value_enum)]
    pub wal_recovery: Option<RecoveryArg>,

    /// Largest value accepted, in bytes. [default: 1048576]
    #[arg(long, env = "ISLAB_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,

    /// Client writes are refused while the data directory's disk has less free space than
    /// this many bytes (reads go on; writes resume when space is freed). [default: 268435456]
    #[arg(long, env = "ISLAB_MIN_FREE_DISK_BYTES")]
    pub min_free_disk_bytes: Option<u64>,

    /// Raft heartbeat interval in milliseconds. [default: 100]
    #[arg(long, env = "ISLAB_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,

    /// Minimum election timeout in milliseconds (the maximum is twice this). [default: 800]
    #[arg(long, env = "ISLAB_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,

    /// Take a checkpoint after this many log entries. [default: 50000]
    #[arg(long, env = "ISLAB_SNAPSHOT_AFTER_ENTRIES")]
    pub snapshot_after_entries: Option<u64>,

    /// Log entries kept behind a checkpoint for followers that lag a little. [default: 10000]
    #[arg(long, env = "ISLAB_KEEP_ENTRIES_AFTER_SNAPSHOT")]
    pub keep_entries_after_snapshot: Option<u64>,

    /// Bytes the WAL may hold before the groups pinning its oldest segment are checkpointed
    /// and purged so it can be deleted; 0 for no budget. [default: 536870912]
    #[arg(long, env = "ISLAB_WAL_BUDGET_BYTES")]
    pub wal_budget_bytes: Option<u64>,

    /// Size at which a WAL segment is closed and the next started. [default: 67108864]
    #[arg(long, env = "ISLAB_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,

    /// Most client requests a shard leader gathers into one Raft entry, 1 to 4096 (1: no
    /// gathering). [default: 1024]
    #[arg(long, env = "ISLAB_GATHER_MAX_REQUESTS")]
    pub gather_max_requests: Option<usize>,

    /// Raft entries of client writes one shard keeps proposed and not yet applied at once;
    /// writes arriving meanwhile are gathered into the next. [default: 1]
    #[arg(long, env = "ISLAB_GATHER_MAX_IN_FLIGHT")]
    pub gather_max_in_flight: Option<usize>,

    /// Log format on stderr.
    #[arg(long, env = "ISLAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Sync,
    Async,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecoveryArg {
    TolerateTailCorruption,
    TolerateCorruption,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
