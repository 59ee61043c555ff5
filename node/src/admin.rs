//! The operator API, `islab.v1.Admin`, and the cluster view it answers from.
//!
//! - `service` — [`AdminService`](service::AdminService): init, membership, shards, status.
//! - `membership` — the steps of a membership change: probing a new node, draining one.
//! - `status` — what one node says about itself.
//! - `shard_list` — every node's status gathered into the cluster-wide picture.

mod membership;
pub(crate) mod service;
pub(crate) mod shard_list;
pub(crate) mod status;
