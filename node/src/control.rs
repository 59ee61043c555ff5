//! The node's background loops: what keeps the cluster in shape without a request asking.
//!
//! - `controller` — the meta leader moves replicas and spreads leaders, a step at a time.
//! - `reconciler` — starts and stops this node's groups as the shard map says.
//! - `quiesce` — idle groups stop heartbeating; node-to-node pings stand in.
//! - `wal_budget` — checkpoints the groups that pin the WAL's oldest segment.

pub(crate) mod controller;
pub(crate) mod quiesce;
pub(crate) mod reconciler;
pub(crate) mod wal_budget;
