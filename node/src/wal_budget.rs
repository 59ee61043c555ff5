//! The WAL budget: keeps the node's one WAL near `raft.wal-budget-bytes` by checkpointing the
//! groups that pin its oldest segment.
//!
//! Segments are deleted only as a prefix, once no group has a live entry in them (see
//! docs/architecture.md). A group's log is purged by its own snapshot policy (every
//! `snapshot-after-entries`), so a quiet group — the meta group, a shard written once — can
//! hold the oldest segment for ever while busy groups fill new ones behind it: the WAL, and
//! the time recovery takes to read it, grow without bound.
//!
//! ```text
//! every CHECK_EVERY, while the WAL is over budget and has more than one segment:
//!   for each group with live entries in the oldest segment (Wal::pinning_groups):
//!     its checkpoint covers those entries?  yes ─► purge its log up to the checkpoint
//!                                           no  ─► take a checkpoint now (then purge, next round)
//! ```
//!
//! The purge goes up to the checkpoint, past `keep-entries-after-snapshot`: a follower that
//! lags behind it catches up from the checkpoint instead of the log, which is the price of
//! the bound. A group this node no longer runs (its replica moved away) cannot be purged this
//! way; its entries stay until the group is removed from the WAL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use crate::node_state::NodeState;

/// How often the WAL's size is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A group asked for a checkpoint is not asked again for this long (it may be building one).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// Runs until the node stops.
pub(crate) async fn run(state: Arc<NodeState>) {
    let budget = state.config.raft.wal_budget_bytes;
    if budget == 0 {
        return;
    }
    let mut asked: HashMap<u64, Instant> = HashMap::new();
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let stats = state.wal.stats();
        if stats.bytes <= budget || stats.segments < 2 {
            continue;
        }
        for (group, first) in state.wal.pinning_groups() {
            let Ok(shard) = state.shard(group) else {
                continue;
            };
            let (checkpoint, applied) = {
                let m = shard.raft.metrics();
                let m = m.borrow_watched();
                (
                    m.snapshot.map(|s| s.index),
                    m.last_applied.map_or(0, |l| l.index),
                )
            };
            if checkpoint.is_some_and(|c| c >= first) {
                let upto = checkpoint.unwrap_or(0);
                tracing::info!(
                    group,
                    upto,
                    wal_bytes = stats.bytes,
                    budget,
                    "WAL over budget: purging a group's log up to its checkpoint"
                );
                let _ = shard.raft.trigger().purge_log(upto).await;
            } else if applied >= first
                && asked
                    .get(&group)
                    .is_none_or(|at| at.elapsed() >= ASK_AGAIN_AFTER)
            {
                tracing::info!(
                    group,
                    applied,
                    wal_bytes = stats.bytes,
                    budget,
                    "WAL over budget: checkpointing a group that pins its oldest segment"
                );
                asked.insert(group, Instant::now());
                let _ = shard.raft.trigger().snapshot().await;
            }
        }
    }
}
