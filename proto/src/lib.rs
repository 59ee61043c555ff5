//! IsLabDB's gRPC API, generated from `proto/` at build time (protox + tonic-prost-build, so
//! no system `protoc` is needed).
//!
//! # Layout
//!
//! - [`v1`] — `islab.v1`: the `Kv` data service and the `Admin` service.
//! - [`raft::v1`] — `islab.raft.v1`: the node-to-node `Transport`.
//! - [`FILE_DESCRIPTOR_SET`] — the compiled descriptors, served by gRPC reflection.
//! - `convert` — the shard map between its wire form (`islab.v1.ShardMap`) and
//!   `islab_shardmap::ShardMap`.

/// `islab.v1`: data and administration.
pub mod v1 {
    tonic::include_proto!("islab.v1");
}

/// `islab.raft.v1`: node-to-node Raft transport.
pub mod raft {
    pub mod v1 {
        tonic::include_proto!("islab.raft.v1");
    }
}

/// The encoded `FileDescriptorSet` of every IsLabDB proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/islab_descriptor.bin"));

/// Response metadata key carrying the leader's address on a not-leader error.
pub const LEADER_METADATA: &str = "islab-leader";

/// Response metadata key naming the kind of a refusal whose gRPC code is shared by several
/// (RESOURCE_EXHAUSTED: too large, or no disk space).
pub const ERROR_METADATA: &str = "islab-error";

/// [`ERROR_METADATA`] value: the node's data disk is under its free-space reserve.
pub const ERROR_NO_SPACE: &str = "no-space";

/// Request metadata key carrying the epoch of the client's shard map.
pub const EPOCH_METADATA: &str = "islab-epoch";

/// Response metadata key (binary) carrying the node's newer shard map, encoded as
/// `islab.v1.ShardMap`, on a stale-epoch error.
pub const SHARD_MAP_METADATA: &str = "islab-shard-map-bin";

mod convert;
