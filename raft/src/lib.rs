//! Consensus for IsLabDB: openraft, adapted to the node's one WAL and its in-memory shards.
//!
//! Each shard is an openraft group of one [`TypeConfig`]. Its log lives in the node-wide
//! [`islab_storage::Wal`] (so one `fdatasync` covers every shard's appends), its state in an
//! [`islab_storage::MemStore`], and its snapshots are checkpoint files. This crate keeps
//! openraft behind one boundary: the node starts and drives groups through [`Group`], reads
//! their state as [`GroupMetrics`], and serves and sends the Raft transport through
//! [`TransportService`] and [`NetworkFactory`]; no other crate depends on openraft (a test in
//! this crate checks it), so an openraft upgrade is a change to this crate only.
//!
//! ```text
//! node ──► Group ──► openraft::Raft ──RaftLogStorage──► LogStore ──► Wal
//!                                   ──RaftStateMachine─► StateMachine ──► MemStore + CheckpointDir
//!                                   ──RaftNetworkV2────► PeerNetwork ──► Peers (gRPC) ──► peer's
//!                                                                        TransportService ──► Group
//! ```
//!
//! # Layout
//!
//! - `group` — [`Group`], the handle of one running group; [`GroupConfig`]; openraft's
//!   answers classified into [`Error`]
//! - `group_metrics` — [`GroupMetrics`], [`Role`], [`MetricsWatch`]: a group's state, our words
//! - `network` — the transport's client side: [`NetworkFactory`], one per group
//! - `peers` — [`Peers`]: one gRPC channel per peer node, shared by every group
//! - `transport_service` — the transport's server side: [`TransportService`] over a
//!   [`GroupHost`] (the node)
//! - `type_config` — [`TypeConfig`] and the aliases ([`LogId`], [`Vote`], [`Entry`], …)
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
mod group;
mod group_metrics;
mod log_reader;
mod log_store;
mod network;
mod peers;
mod snapshot_builder;
mod state_machine;
mod store_slot;
mod transport_service;
mod type_config;

pub use crate::error::Error;
pub use crate::group::{Group, GroupConfig, MembershipChange};
pub use crate::group_metrics::{GroupMetrics, MetricsWatch, Role};
pub use crate::log_reader::LogReader;
pub use crate::log_store::LogStore;
pub use crate::network::{ClusterIdSource, NetworkFactory};
pub use crate::peers::Peers;
pub use crate::snapshot_builder::SnapshotBuilder;
pub use crate::state_machine::StateMachine;
pub use crate::store_slot::StoreSlot;
pub use crate::transport_service::{GroupHost, TransportService};
pub use crate::type_config::{
    CommittedLeaderId, Entry, EntryPayload, LogId, LogState, Membership, Node, NodeId, Snapshot,
    SnapshotMeta, StoredMembership, TypeConfig, Vote,
};
