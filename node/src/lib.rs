//! A running IsLabDB node: the storage engine and the Raft groups wired to the network.
//!
//! [`Node::start`] opens the data directory (locked), recovers the WAL, starts each group's
//! Raft, and serves gRPC: `islab.v1.Kv` (data), `islab.v1.Admin` (init, membership, status),
//! `islab.raft.v1.Transport` (node to node), gRPC health and reflection — all on one port.
//! [`NodeHandle::shutdown`] stops it in order.
//!
//! # Layout
//!
//! - `config` — [`NodeConfig`], [`Limits`], [`RaftTiming`]: plain data, validated once.
//! - `node` — [`Node::start`] and [`NodeHandle`].
//! - `node_state`, `shard` — what the services share; one Raft group and its error mapping.
//! - `read_batcher` — linearizable reads sharing read-index rounds.
//! - `write_gatherer` — writes of any client sharing Raft entries.
//! - `kv_service`, `admin_service` — the gRPC services (the Raft transport is islab-raft's).
//! - `cluster_id` — which cluster this node belongs to; refusing others.
//! - `validate` — request limits.
//! - `error` — [`Error`], and its one conversion to `tonic::Status`.

mod admin_service;
mod cluster_id;
mod config;
mod controller;
mod disk_space;
mod error;
mod kv_service;
mod liveness;
mod meta;
mod node;
mod node_state;
mod quiesce;
mod quiet;
mod read_batcher;
mod reconciler;
mod shard;
mod shard_list;
mod status;
mod validate;
mod wal_budget;
mod write_gatherer;

pub use admin_service::{DEFAULT_REPLICATION, DEFAULT_SHARDS};
pub use config::{Gathering, Limits, NodeConfig, RaftTiming};
pub use error::{Error, Result};
pub use node::{Node, NodeHandle};
pub use node_state::META_GROUP;
