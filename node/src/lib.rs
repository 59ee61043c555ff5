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
//! - `error` — [`Error`], and its one conversion to `tonic::Status`.
//! - `node` — [`Node::start`] and [`NodeHandle`]: opening, serving, shutting down in order.
//! - `node_state` — what the services and loops share: identity, WAL, groups, shard map.
//! - `cluster_id` — which cluster this node belongs to; refusing others.
//! - `meta` — the meta group's state: the node list and the shard map.
//! - `disk_space` — free space on the data directory; client writes refused when low.
//! - `liveness` — what peers' pings said: who is alive, which groups each leads and keeps quiet.
//! - `shard` — one Raft group on this node, with what runs beside it:
//!   `shard::write_gatherer` (writes of any client sharing Raft entries),
//!   `shard::read_batcher` (linearizable reads sharing read-index rounds),
//!   `shard::quiet` (its quiescence state).
//! - `kv` — the data API: `kv::service`, `kv::route`, `kv::convert`, `kv::validate`.
//! - `admin` — the operator API: `admin::service`, `admin::membership`, `admin::status`,
//!   `admin::shard_list` (the Raft transport's service is islab-raft's).
//! - `observe` — the monitoring HTTP listener: `observe::metrics` (`/metrics`),
//!   `observe::probes` (`/livez`, `/readyz`).
//! - `control` — background loops: `control::controller`, `control::reconciler`,
//!   `control::quiesce`, `control::wal_budget`.

mod admin;
mod cluster_id;
mod config;
mod control;
mod disk_space;
mod error;
mod kv;
mod liveness;
mod meta;
mod node;
mod node_state;
mod observe;
mod shard;

pub use admin::service::{DEFAULT_REPLICATION, DEFAULT_SHARDS};
pub use config::{Gathering, Limits, NodeConfig, RaftTiming};
pub use error::{Error, Result};
pub use node::{Node, NodeHandle};
pub use node_state::META_GROUP;
