//! Consensus for IsLabDB: openraft, adapted to the node's one WAL and its in-memory shards.
//!
//! Each shard is an openraft group of one [`TypeConfig`]. Its log lives in the node-wide
//! [`islab_storage::Wal`] (so one `fdatasync` covers every shard's appends), its state in an
//! [`islab_storage::MemStore`], and its snapshots are checkpoint files. This crate keeps
//! openraft behind one boundary: other crates use the aliases and adapters re-exported here,
//! so an openraft upgrade is a change to this crate only.
//!
//! ```text
//! openraft ──RaftLogStorage──► LogStore ──► Wal (group id, term, index, payload bytes)
//!          ──RaftStateMachine─► StateMachine ──► MemStore (via StoreSlot) + CheckpointDir
//! ```
//!
//! # Layout
//!
//! - `type_config` — [`TypeConfig`] and the aliases ([`LogId`], [`Vote`], [`Entry`], [`Raft`], …)
//! - `encoding` — openraft values ⇄ WAL records, vote/committed blobs, checkpoint membership
//! - `log_store` — [`LogStore`]: `RaftLogStorage` over the WAL; durability callbacks
//! - `log_reader` — [`LogReader`]: `RaftLogReader` for replication and apply
//! - `state_machine` — [`StateMachine`]: `RaftStateMachine` over the memory store
//! - `snapshot_builder` — [`SnapshotBuilder`]: writes a checkpoint while applies continue
//! - `checkpoint_dir` — a group's checkpoint files and which one is the current snapshot
//! - `store_slot` — [`StoreSlot`]: the swappable memory store readers share
//! - `error` — [`Error`], and its one conversion to openraft's `io::Error`

mod checkpoint_dir;
// Public only for the fuzz targets (fuzz/): not part of the crate's API.
#[doc(hidden)]
pub mod encoding;
mod error;
mod log_reader;
mod log_store;
mod snapshot_builder;
mod state_machine;
mod store_slot;
mod type_config;

pub use crate::error::Error;
pub use crate::log_reader::LogReader;
pub use crate::log_store::LogStore;
pub use crate::snapshot_builder::SnapshotBuilder;
pub use crate::state_machine::StateMachine;
pub use crate::store_slot::StoreSlot;
pub use crate::type_config::{
    CommittedLeaderId, Entry, EntryPayload, LogId, LogState, Membership, Node, NodeId, Raft,
    Snapshot, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};
