//! The command line, as clap types: global flags, then one subcommand group per module.
//!
//! Only argument shapes live here; each command group's behaviour lives in its own module
//! (`wal_dump`, `checkpoint_inspect`, …). A new command group (`server`, `cluster`, `member`,
//! `put`/`get`/`del`/`scan`, `bench`) is one variant of [`Command`] plus its `Args` type here,
//! one module, and one arm in `main::run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where the client commands connect when neither `--endpoints` nor `ISLAB_ENDPOINTS` is set.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7379";

/// The exit statuses every command shares, shown at the end of `--help`.
const EXIT_STATUS: &str = "\
Exit status:
  0  success (for the inspection commands: no damage found)
  1  error: bad arguments, a missing or unreadable file, a failed request
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
pub struct GlobalArgs {
    /// Comma-separated `host:port` list of cluster nodes the client commands talk to.
    #[arg(
        long,
        global = true,
        env = "ISLAB_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS
    )]
    #[allow(
        dead_code,
        reason = "read by the client commands (put, get, cluster, …)"
    )]
    pub endpoints: Vec<String>,

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
}
