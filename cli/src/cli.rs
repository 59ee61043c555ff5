//! The command line, as clap types: global flags, then one subcommand group per module.
//!
//! Only argument shapes live here; each command group's behaviour lives in its own module
//! (`wal_dump`, `checkpoint_inspect`, `kv`, `cluster`, `member`, `playground`, …). A new
//! command group (`bench`, `shard`) is one variant of [`Command`] plus its `Args` type here,
//! one module, and one arm in `main::run`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where the client commands connect when neither `--endpoints` nor `ISLAB_ENDPOINTS` is set.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7379";

/// The exit statuses every command shares, shown at the end of `--help`.
const EXIT_STATUS: &str = "\
Exit status:
  0  success (for the inspection commands: no damage found)
  1  error: bad arguments, a missing or unreadable file, a failed request, an unreachable node
  2  damage found: a corrupt or torn WAL record, a bad segment header, a corrupt checkpoint";

/// islab: the one binary of IsLabDB (server, client and offline tools).
#[derive(Debug, Parser)]
#[command(name = "islab", version, about, after_help = EXIT_STATUS)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Comma-separated `host:port` list of cluster nodes the client commands talk to.
    #[arg(
        long,
        global = true,
        env = "ISLAB_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS
    )]
    pub endpoints: Vec<String>,

    /// Comma-separated `advertised=host:port` pairs: where to reach a node that the cluster
    /// names by an address this machine cannot use (nodes in containers advertise `node2:7379`;
    /// from the host it is `127.0.0.1:7380`). Applies to leader hints and endpoints alike.
    #[arg(
        long,
        global = true,
        env = "ISLAB_ADDRESS_MAP",
        value_delimiter = ',',
        value_name = "ADVERTISED=HOST:PORT",
        value_parser = parse_mapping
    )]
    pub address_map: Vec<(String, String)>,

    /// How long a client command may take in all, retries and leader changes included
    /// (e.g. 500ms, 15s, 2m). [default: 15s; `member add`: 5m, as it waits for the catch-up]
    #[arg(long, global = true, env = "ISLAB_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Output format.
    #[arg(short = 'w', long, global = true, value_enum, default_value_t = WriteOut::Simple)]
    pub write_out: WriteOut,
}

/// How a command prints its result (etcdctl's `-w`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum WriteOut {
    /// One line per item, `key=value` fields.
    #[default]
    Simple,
    /// Aligned columns under a header.
    Table,
    /// JSON: one document, or JSON Lines for streams (`wal dump`).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the cluster and measure: throughput and latency percentiles of put, get, mixed or
    /// scan operations, closed loop (`--clients` in flight) or open loop (`--rate`).
    ///
    /// Prints every setting it ran with, the cluster's durability mode included, then ops/s and
    /// the latency of each operation kind from an HDR histogram (p50, p99, p99.9, max). In open
    /// loop, latency is measured from when each operation was due, so a stalled cluster shows
    /// up in the percentiles instead of being hidden (no coordinated omission).
    Bench(BenchArgs),

    /// Run a node: serve data, Raft and admin requests on one port until Ctrl-C or SIGTERM.
    ///
    /// Settings come from flags, then `ISLAB_*` environment variables, then the TOML file given
    /// with `--config`, then defaults; they are validated once, at start.
    Server(Box<ServerArgs>),

    /// Inspect a node's write-ahead log, offline.
    #[command(subcommand)]
    Wal(WalCommand),

    /// Inspect checkpoint files, offline.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),

    /// Run a local cluster (N node processes on loopback ports) until Ctrl-C or SIGTERM.
    ///
    /// Starts `islab server` N times (node i listens on 127.0.0.1:<base-port + i - 1> and keeps
    /// its data in <dir>/node<i>, its log in <dir>/node<i>.log), waits until every node serves,
    /// initialises the cluster, and prints the endpoints and example commands, then a line
    /// starting with `ready`. Ctrl-C or SIGTERM stops every node (SIGTERM, then SIGKILL after
    /// 10 s) and keeps the data: started again on the same directory, the playground brings
    /// the same cluster back instead of initialising a new one.
    Playground(PlaygroundArgs),

    /// Check that a node serves: ask its gRPC health service; exit 0 if it answers SERVING.
    ///
    /// For container healthchecks and scripts (the image has no shell or curl). Prints the
    /// serving status; a node that is unreachable, or answers anything but SERVING within
    /// `--timeout` (default 3s), is an error (exit 1).
    Health(HealthArgs),

    /// Initialise a cluster, or show the status of every node.
    #[command(subcommand)]
    Cluster(ClusterCommand),

    /// List, add, promote or remove cluster members.
    #[command(subcommand)]
    Member(MemberCommand),

    /// List the shards (slots, replicas, leader, keys, bytes, ops/s) or move a shard's leader.
    #[command(subcommand)]
    Shard(ShardCommand),

    /// Store a value under a key; prints the new version (the write's log index).
    Put(PutArgs),

    /// Print the value of a key.
    ///
    /// As with etcdctl, a key that does not exist prints nothing and exits 0 (an existing key
    /// with an empty value prints an empty line). `-w json` says `"found": false`.
    /// A value that is not UTF-8 is printed as 0x-prefixed hex.
    Get(GetArgs),

    /// Delete a key; prints `deleted=1`, or `deleted=0` if it did not exist (exit 0 either way).
    Del(DelArgs),

    /// Print the keys in a range or with a prefix, in key order, with values and versions.
    ///
    /// One line per key: `key="…" value="…" version=N` (quoted with Rust escapes; a key or
    /// value that is not UTF-8 is printed as 0x-prefixed hex). Without --prefix, --start or
    /// --end, every key.
    Scan(ScanArgs),
}

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

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Initialise a new cluster whose voters are the nodes at `--endpoints`.
    ///
    /// Every endpoint is asked who it is (node id, advertised address); the first one is then
    /// sent Init with all of them as voters. Refused if a node is unreachable, already belongs
    /// to a cluster, or two endpoints are the same node. Waits (up to `--timeout`) until every
    /// node knows the cluster and agrees on a leader, then prints the cluster id and members.
    Init(InitArgs),

    /// Show every endpoint's status: node, cluster, durability, WAL, and per Raft group its
    /// role, leader, term, log indices, checkpoint and size.
    ///
    /// An endpoint that does not answer is shown as unreachable, and the exit status is 1.
    Status,
}

/// `islab cluster init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Succeed without changing anything if the nodes already belong to one cluster (for a
    /// one-shot init job that runs again on every start). Nodes of two different clusters,
    /// or an unreachable node of a new cluster, are still errors.
    #[arg(long)]
    pub if_needed: bool,

    /// Shards (Raft groups) the key space is split into; fixed for the life of the cluster.
    #[arg(long, default_value_t = islab_node::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shards: u32,

    /// Replicas per shard (capped by the number of nodes).
    #[arg(long, default_value_t = islab_node::DEFAULT_REPLICATION, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication: u32,
}

#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Every shard: its slot range, replicas, leader, keys, bytes, applied ops/s; then the
    /// map's epoch and how evenly keys, bytes, ops and leaders spread (entropy, 1 = even).
    List,

    /// Make `node` the leader of `shard` (it must hold a voting replica); returns once it
    /// leads. The cluster's own balancing may move it again later.
    TransferLeader {
        /// The shard's id (see `islab shard list`).
        shard: u64,
        /// The node to lead it.
        node: u64,
    },
}

/// `islab health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The node to ask. [default: the first of --endpoints]
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,

    /// The gRPC service whose status to ask for (e.g. islab.v1.Kv). [default: the whole server]
    #[arg(long, default_value = "")]
    pub service: String,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List the members (voters and learners) and the leader.
    List,

    /// Add a node as a learner; returns once it has caught up with the leader's log.
    Add {
        /// The new node's id (as given to its `islab server --id`).
        id: u64,
        /// host:port the other nodes and clients reach it at.
        addr: String,
    },

    /// Make a caught-up learner a voter.
    Promote {
        /// The learner's id.
        id: u64,
    },

    /// Remove a node (voter or learner) from the cluster. Its shard replicas move to the
    /// other nodes first, so this can take a while (default --timeout: 5 minutes).
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// Read consistency of `get` and `scan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Sees every write acknowledged before the read started (read index on the leader).
    #[default]
    Linearizable,
    /// Served from the replica that answers; cheaper, may be stale.
    Serializable,
}

/// `islab put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key (any bytes the shell can pass; not empty, at most 4 KiB).
    pub key: OsString,

    /// The value.
    #[arg(allow_hyphen_values = true)]
    pub value: OsString,

    /// Expire the key after this long (e.g. 500ms, 10s, 5m, 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
}

/// `islab get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    pub key: OsString,

    /// How fresh the read must be.
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
}

/// `islab del`.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key.
    pub key: OsString,
}

/// `islab scan`: a prefix, a range, or (with neither) every key.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only keys that begin with this prefix.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub prefix: Option<OsString>,

    /// First key of the range (included). [default: the first key]
    #[arg(long)]
    pub start: Option<OsString>,

    /// End of the range (excluded). [default: no end]
    #[arg(long)]
    pub end: Option<OsString>,

    /// Print at most N keys (0: all of them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: usize,

    /// How fresh the read must be (each page of a long scan is its own read).
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
}

/// One `advertised=host:port` entry of `--address-map`.
pub fn parse_mapping(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
            Ok((from.trim().to_string(), to.trim().to_string()))
        }
        _ => Err(format!(
            "invalid address mapping {text:?}: expected advertised=host:port, e.g. node2:7379=127.0.0.1:7380"
        )),
    }
}

/// A duration such as `1500ms`, `10s`, `5m`, `2h`, `1d` or `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d), e.g. 10s"
        )
    };
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(number * scale).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    if text.is_empty() {
        return Err(bad());
    }
    Ok(total)
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
    #[arg(long, default_value = "10s", value_parser = crate::cli::parse_duration)]
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

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Print every record of the WAL segments, checking each checksum.
    ///
    /// Read-only: the segments are read as plain files, never opened as a WAL, so nothing is
    /// truncated or written and a node may be running on the directory. (A running node may be
    /// mid-write at the end of its last segment, which then shows as a torn tail.)
    ///
    /// Each record is printed as `<segment>:<byte offset> <kind> group=… term=… index=…` and,
    /// for entries, votes and committed log ids, the decoded Raft payload. Damage is printed
    /// where it is found, with its reason, and the dump goes on at the next valid record.
    /// A summary line ends the output.
    #[command(after_help = EXIT_STATUS)]
    Dump(WalDumpArgs),
}

#[derive(Debug, Args)]
pub struct WalDumpArgs {
    /// A node's WAL directory, or its data directory (then `<dir>/wal` is read).
    pub dir: PathBuf,

    /// Print JSON Lines: one object per segment, record and damage, then a summary object
    /// (same as `-w json`).
    #[arg(long)]
    pub json: bool,

    /// Only print the records of this Raft group (damage and the summary are always printed).
    #[arg(long, value_name = "N")]
    pub group: Option<u64>,

    /// Do not decode payloads as Raft entries; show their length and first bytes.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Print a checkpoint's metadata and verify every block.
    #[command(after_help = EXIT_STATUS)]
    Inspect(CheckpointInspectArgs),
}

#[derive(Debug, Args)]
pub struct CheckpointInspectArgs {
    /// The checkpoint file.
    pub file: PathBuf,

    /// Also print the first N keys of the image with their versions and values.
    #[arg(long, value_name = "N")]
    pub keys: Option<usize>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["islab", "wal", "dump", "d", "-w", "json"]).unwrap();
        assert_eq!(cli.global.write_out, WriteOut::Json);
        let cli = Cli::try_parse_from([
            "islab",
            "--endpoints",
            "a:1,b:2",
            "checkpoint",
            "inspect",
            "f",
        ])
        .unwrap();
        assert_eq!(cli.global.endpoints, ["a:1", "b:2"]);
    }

    #[test]
    fn deployment_flags_parse() {
        let cli = Cli::try_parse_from([
            "islab",
            "--address-map",
            "node1:7379=127.0.0.1:7379, node2:7379=127.0.0.1:7380",
            "cluster",
            "init",
            "--if-needed",
        ])
        .unwrap();
        assert_eq!(
            cli.global.address_map,
            [
                ("node1:7379".to_string(), "127.0.0.1:7379".to_string()),
                ("node2:7379".to_string(), "127.0.0.1:7380".to_string())
            ]
        );
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Init(InitArgs {
                if_needed: true,
                ..
            }))
        ));
        for bad in ["node1:7379", "=127.0.0.1:1", "node1:7379="] {
            let e = Cli::try_parse_from(["islab", "--address-map", bad, "member", "list"])
                .unwrap_err()
                .to_string();
            assert!(e.contains("expected advertised=host:port"), "{bad}: {e}");
        }
        let cli = Cli::try_parse_from(["islab", "health", "--endpoint", "node1:7379"]).unwrap();
        let Command::Health(h) = cli.command else {
            panic!("not health")
        };
        assert_eq!(
            (h.endpoint.as_deref(), h.service.as_str()),
            (Some("node1:7379"), "")
        );
    }

    #[test]
    fn durations_take_units() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("1500ms"), Ok(ms(1500)));
        assert_eq!(parse_duration("7"), Ok(ms(7000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("2d"), Ok(ms(172_800_000)));
        for bad in ["", "s", "10x", "ten s", "-1s", "1s2", "1.2.3s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("invalid duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn client_commands_parse() {
        let cli = Cli::try_parse_from(["islab", "put", "k", "-1", "--ttl", "10s"]).unwrap();
        let Command::Put(put) = cli.command else {
            panic!("not a put")
        };
        assert_eq!(
            (put.key.to_str(), put.value.to_str()),
            (Some("k"), Some("-1"))
        );
        assert_eq!(put.ttl, Some(Duration::from_secs(10)));
        assert!(Cli::try_parse_from(["islab", "scan", "--prefix", "a", "--start", "b"]).is_err());
        let cli =
            Cli::try_parse_from(["islab", "get", "k", "--consistency", "serializable"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Get(GetArgs {
                consistency: ConsistencyArg::Serializable,
                ..
            })
        ));
    }
}
