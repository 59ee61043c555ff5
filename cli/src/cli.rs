//! The command line, as clap types: global flags and the [`Command`] list here, each group's
//! argument types in a submodule.
//!
//! Only argument shapes live here; each command group's behaviour lives in its own module
//! (`commands::…`, `inspect::…`, `bench`, `playground`). A new command group is one variant of
//! [`Command`] plus its `Args` type in one of the submodules below, one module, and one arm
//! in `main::run`.
//!
//! - `node_args` — `islab server` and `islab playground` (the commands that run nodes)
//! - `client_args` — the client commands: `cluster`, `member`, `shard`, `health`, `put|get|del|scan`
//! - `bench_args` — `islab bench`
//! - `inspect_args` — the offline tools: `wal dump`, `checkpoint inspect`
//! - `values` — what the groups share: value parsers (durations, address maps) and the
//!   exit-status help text

mod bench_args;
mod client_args;
mod inspect_args;
mod node_args;
mod values;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use self::bench_args::{BenchArgs, BenchDistribution, BenchTarget, BenchWorkload};
pub use self::client_args::{
    ClusterCommand, ConsistencyArg, DelArgs, GetArgs, HealthArgs, InitArgs, MemberCommand, PutArgs,
    ScanArgs, ShardCommand,
};
pub use self::inspect_args::{CheckpointCommand, CheckpointInspectArgs, WalCommand, WalDumpArgs};
pub use self::node_args::{DurabilityArg, LogFormat, PlaygroundArgs, RecoveryArg, ServerArgs};
use self::values::{EXIT_STATUS, parse_duration, parse_mapping};

/// Where the client commands connect when neither `--endpoints` nor `ISLAB_ENDPOINTS` is set.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7379";

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
