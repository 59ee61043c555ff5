//! The shard map of IsLabDB, shared by nodes and the SDK.
//!
//! ```text
//!  key ──crc32c(hash tag or key) mod 4096──► slot ──ranges──► shard (a Raft group)
//!                                                             └─► replicas (node ids)
//! ```
//!
//! A key's slot never changes and neither do the slot ranges: the number of shards is fixed
//! when the cluster is initialised. What changes over time is which nodes hold each shard;
//! every change makes a new map with a higher [`ShardMap::epoch`]. The map is replicated by the
//! meta group and cached by clients, which route every key straight to its shard's leader.
//!
//! # Layout
//!
//! - `slot` — keys to hash slots ([`slot_of`], [`SLOTS`]).
//! - `shard_map` — [`ShardMap`]: slot ranges, their shards and replicas, at one epoch.
//! - [`placement`] — the pure decisions built on the map: where a new replica goes, which
//!   replica leaves, which leader moves.

pub mod placement;
mod shard_map;
mod slot;

pub use shard_map::{NodeId, ShardId, ShardInfo, ShardMap};
pub use slot::{SLOTS, hash_tag, slot_of};
