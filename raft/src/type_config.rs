//! The one openraft type configuration of IsLabDB, and the names the rest of the system uses
//! for openraft's generic types.
//!
//! Every shard is a Raft group of this one [`TypeConfig`]. The leader id is openraft's
//! *standard* one (at most one leader per term), so a committed leader id is just the term:
//! that is what lets the WAL store a log id as a plain `(term, index)` pair
//! ([`islab_storage::LogPos`]). Other crates name these aliases instead of openraft's
//! generics, so an openraft bump stays inside `islab-raft`.

use islab_storage::{Checkpoint, Request, Response};
use openraft::type_config::alias;

/// A node's id in the cluster.
pub type NodeId = u64;

/// What the cluster knows about a node: the address its Raft transport listens on.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The openraft types of every IsLabDB shard: commands in, responses out, u64 node ids,
    /// standard (one leader per term) leader ids, tokio.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
);

/// A committed leader id: in standard Raft, just the term.
pub type CommittedLeaderId = alias::CommittedLeaderIdOf<TypeConfig>;
/// `(term, index)` of a log entry.
pub type LogId = alias::LogIdOf<TypeConfig>;
/// A vote: `(term, voted_for)` plus whether a quorum granted it.
pub type Vote = alias::VoteOf<TypeConfig>;
/// A log entry as openraft hands it to storage.
pub type Entry = alias::EntryOf<TypeConfig>;
/// What a log entry carries: blank, a command, or a membership change.
pub type EntryPayload = alias::EntryPayloadOf<TypeConfig>;
/// A membership configuration (voters and learners).
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership and the log id that introduced it.
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: its last log id and membership.
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its metadata and the verified checkpoint file that holds the data.
pub type Snapshot = alias::SnapshotOf<TypeConfig, Checkpoint>;
/// The first and last log ids a log store holds.
pub type LogState = openraft::storage::LogState<TypeConfig>;
