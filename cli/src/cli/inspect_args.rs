//! Arguments of the offline tools: `islab wal dump` and `islab checkpoint inspect`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::values::EXIT_STATUS;

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
