//! The commands that talk to a node or run one: each module is one command group, its
//! behaviour only (the argument types are in `cli`).
//!
//! - `server` — `islab server`: a node in the foreground, config layering, signals
//! - `cluster` — `islab cluster init`, and the status fan-out and wait-until-formed the
//!   playground shares
//! - `cluster_status` — `islab cluster status`: every node and its Raft groups
//! - `member` — `islab member list | add | promote | remove`
//! - `shard` — `islab shard list | transfer-leader`
//! - `kv` — `islab put | get | del | scan`
//! - `health` — `islab health`: one gRPC health check, for container healthchecks

pub mod cluster;
pub mod cluster_status;
pub mod health;
pub mod kv;
pub mod member;
pub mod server;
pub mod shard;
