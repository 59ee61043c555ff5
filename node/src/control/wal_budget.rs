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
//!   for each group with live entries first..=last in the oldest segment (Wal::pinning_groups):
//!     purged below min(checkpoint, last)?  yes ─► purge the log up to it
//!                                                 (at most every PURGE_AGAIN_AFTER)
//!     checkpoint before last?  yes ─► take a checkpoint now (at most every ASK_AGAIN_AFTER)
//! ```
//!
//! The purge goes only as far as the oldest segment needs (openraft itself purges up to
//! `keep-entries-after-snapshot` behind each checkpoint), but past that point there: a
//! follower that lags behind it catches up from the checkpoint instead of the log, which is
//! the price of the bound. A group this node no longer runs (its replica
//! moved away) cannot be purged this way; its entries stay until the group is removed from the
//! WAL, and the node says so (at most every ASK_AGAIN_AFTER).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node_state::NodeState;

/// How often the WAL's size is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A group asked for a checkpoint is not asked again for this long (it may be building one).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);
/// A group asked to purge is not asked again for this long (a leader's purge waits for the
/// replication that still reads those entries).
const PURGE_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// Runs until the node stops.
pub(crate) async fn run(state: Arc<NodeState>) {
    let budget = state.config.raft.wal_budget_bytes;
    if budget == 0 {
        return;
    }
    // When each group was last asked for a checkpoint, and for a purge (either takes a while).
    let mut asked: HashMap<u64, Instant> = HashMap::new();
    let mut purge_asked: HashMap<u64, Instant> = HashMap::new();
    let due = |asked: &HashMap<u64, Instant>, group: u64, pause: Duration| {
        asked.get(&group).is_none_or(|at| at.elapsed() >= pause)
    };
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
        for (group, first, last) in state.wal.pinning_groups() {
            let Ok(shard) = state.shard(group) else {
                if due(&asked, group, ASK_AGAIN_AFTER) {
                    tracing::warn!(
                        group,
                        first,
                        wal_bytes = stats.bytes,
                        budget,
                        "WAL over budget: a group this node no longer runs pins the oldest segment"
                    );
                    asked.insert(group, Instant::now());
                }
                continue;
            };
            let (checkpoint, purged, applied) = {
                let m = shard.raft.metrics();
                (m.snapshot, m.purged, m.last_applied.unwrap_or(0))
            };
            let upto = checkpoint.map_or(0, |c| c.min(last));
            if upto >= first
                && purged.is_none_or(|p| p < upto)
                && due(&purge_asked, group, PURGE_AGAIN_AFTER)
            {
                tracing::debug!(
                    group,
                    upto,
                    wal_bytes = stats.bytes,
                    budget,
                    "WAL over budget: purging"
                );
                purge_asked.insert(group, Instant::now());
                let _ = shard.raft.purge_log(upto).await;
            }
            if checkpoint.is_none_or(|c| c < last)
                && applied >= first
                && due(&asked, group, ASK_AGAIN_AFTER)
            {
                tracing::info!(
                    group,
                    applied,
                    wal_bytes = stats.bytes,
                    budget,
                    "WAL over budget: checkpointing a group that pins its oldest segment"
                );
                asked.insert(group, Instant::now());
                let _ = shard.raft.trigger_checkpoint().await;
            }
        }
    }
}
