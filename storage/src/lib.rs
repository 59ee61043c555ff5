//! IsLabDB's storage engine: memory first, WAL behind.
//!
//! A node keeps every shard's data in memory ([`MemStore`], a DashMap per shard) and makes it
//! durable through ONE write-ahead log ([`Wal`]) that is the Raft log of every shard on the
//! node: entries of many groups interleave in one stream and share each `fdatasync` (group
//! commit). A [`Checkpoint`] is the image of one shard at an applied log id: the Raft snapshot
//! a lagging replica installs, and where recovery starts before replaying the WAL tail. Small
//! metadata lives in the [`Catalog`] (sled). This crate knows files, not the network.
//!
//! # Layout
//!
//! - `wal` — the [`Wal`] handle: open, append / truncate / purge / vote per group, flush.
//!   - `wal::read` — reading entries back, from the cache or the segment files.
//!   - `wal::submission` — reserving log space (rotating segments) and queueing to the writer.
//!   - `wal::shared` — what the handle and the writer share: state, queue, counters.
//!   - `wal::writer` — the thread that group-commits, rotates segments and deletes old ones.
//!   - `wal::record`, `wal::segment` — the on-disk framing of records and segment files.
//!   - `wal::scan` — the one reader of a segment's bytes: records and the damage between them,
//!     named the way recovery treats it (used by recovery and by `islab wal dump`).
//!   - `wal::recovery` — rebuilding the index at open: what each kind of damage means.
//!   - `wal::group_log` — one group's in-memory log index.
//! - `fs`, [`sim`] — file I/O behind a trait, and a disk that can lose power, for tests.
//! - `memstore` — the in-memory state machine: one shard's map of versioned values, its reads
//!   (its unit tests in `memstore/tests.rs`).
//!   - `memstore::command` — the commands it applies and their answers; versions.
//!   - `memstore::apply` — applying commands: gathered entries, write ids, batches.
//!   - `memstore::checkpoint_scan` — the image at one version, taken while apply goes on.
//!   - `memstore::bulk_load` — filling a new store a lock shard at a time.
//! - `checkpoint` — the [`Checkpoint`] file: writing, opening, reading, streaming as chunks.
//!   - `checkpoint::format` — the byte layout: header, blocks, trailer, keys in a block.
//!   - `checkpoint::blocks` — reading the blocks back, checking lengths and checksums.
//!   - `checkpoint::receiver` — a checkpoint received as chunks (snapshot install).
//!   - `checkpoint::loader` — loading one on several threads.
//! - `catalog`, `data_dir` — sled metadata, and the locked directory layout.
//! - [`codec`] — bincode 2, the one place typed values become bytes.
//! - `latency` — [`LatencyHistogram`]: lock-free fixed-bucket timings (the WAL's fsyncs, the
//!   node's gRPC calls).
//! - [`failpoints`] — named fault-injection points (cargo feature `failpoints`).
//! - `config`, `error` — [`WalConfig`] and the crate's one [`Error`].

mod catalog;
mod checkpoint;
pub mod codec;
mod config;
mod data_dir;
mod error;
pub mod failpoints;
mod fs;
mod latency;
mod memstore;
pub mod sim;
mod wal;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use catalog::Catalog;
pub use checkpoint::{
    CHECKPOINT_FORMAT_VERSION, Checkpoint, CheckpointMeta, CheckpointReceiver, temp_path,
};
pub use config::{Durability, RecoveryMode, WalConfig};
pub use data_dir::DataDir;
pub use error::{Error, Result};
pub use fs::{FileSystem, StdFs, WalFile};
pub use latency::{LATENCY_BUCKETS_MICROS, Latency, LatencyHistogram};
pub use memstore::command::{
    Command, MAX_GATHERED, POSITION_BITS, RESERVED_PREFIX, Request, Response, WriteId, version,
};
pub use memstore::{CheckpointScan, MemStore, SESSION_WINDOW, Versioned};
pub use wal::record::{Decoded, Record, decode as decode_record, find_next_record};
pub use wal::recovery::{RecoveryReport, Skipped, TornTail};
pub use wal::scan::{Damage, DamageKind, HeaderFault, ScanItem, SegmentScan, list_segments};
pub use wal::segment::{
    HeaderError, SEGMENT_HEADER_LEN, WAL_FORMAT_VERSION, decode_header as decode_segment_header,
    encode_header as encode_segment_header, parse_segment_name, segment_name,
};
pub use wal::{Callback, Wal, WalStats};

/// Identifies a Raft group (a shard; group 0 is the meta group).
pub type GroupId = u64;

/// A log position: the term and index of an entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPos {
    pub term: u64,
    pub index: u64,
}

/// One log entry as the WAL stores it: position plus an opaque payload (the Raft layer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub term: u64,
    pub index: u64,
    pub payload: Bytes,
}

/// The purge point and the last entry of a group's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    pub purged: Option<LogPos>,
    /// The last present entry, or `purged` when there is none.
    pub last: Option<LogPos>,
}
