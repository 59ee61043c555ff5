//! Keeps the groups this node runs in line with the shard map: starts a group when the map
//! gives this node a replica of it (and, for a shard being created, initialises it together
//! with the other founders), and stops it when the map takes the replica away.
//!
//! The map only drops a node from a shard after the shard's own membership change has
//! committed (see `controller`), so stopping never takes a voter out from under its group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use islab_raft::Node;

use crate::meta;
use crate::node_state::{META_GROUP, NodeState};
use crate::shard::Shard;

/// How often the map is checked even when the meta group is quiet.
const TICK: Duration = Duration::from_millis(500);

pub(crate) async fn run(state: Arc<NodeState>) {
    let Ok(meta) = state.meta() else {
        return;
    };
    let mut metrics = meta.raft.watch();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.stop.cancelled() => return,
            changed = metrics.changed() => if !changed { return },
            _ = tick.tick() => {
                for shard in state.shards() {
                    shard.sample_rate();
                }
            }
        }
        reconcile(&state, &meta).await;
    }
}

async fn reconcile(state: &Arc<NodeState>, meta: &Shard) {
    state.set_nodes(meta::members(meta));
    match meta::read_map(meta) {
        Ok(Some((map, _))) => {
            state.set_map(map);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "reading the shard map"),
    }
    let Some(map) = state.map() else {
        return;
    };
    let me = state.id();
    let nodes = state.nodes();
    for info in map.shards_of(me) {
        let shard = match state.start_group(info.id).await {
            Ok(shard) => shard,
            Err(e) => {
                tracing::error!(group = info.id, error = %e, "starting a group");
                continue;
            }
        };
        if info.founders.contains(&me) && shard.is_fresh() {
            found(&shard, &info.founders, &nodes).await;
        }
    }
    for shard in state.shards() {
        let group = shard.group;
        if group != META_GROUP && !map.shard(group).is_some_and(|s| s.has_replica(me)) {
            state.stop_group(group).await;
        }
    }
}

/// Creates a shard's group with its founders as voters. Every founder does this with the same
/// members, which openraft allows; a founder that has already heard from another is told
/// "not allowed", which is fine.
async fn found(shard: &Shard, founders: &[u64], nodes: &BTreeMap<u64, String>) {
    let mut members = BTreeMap::new();
    for id in founders {
        let Some(addr) = nodes.get(id) else {
            tracing::debug!(
                group = shard.group,
                node = id,
                "founder address not known yet"
            );
            return;
        };
        members.insert(*id, Node { addr: addr.clone() });
    }
    match shard.raft.initialize(members).await {
        Ok(()) => tracing::info!(group = shard.group, ?founders, "shard created"),
        Err(islab_raft::Error::AlreadyInitialised { .. }) => {}
        Err(e) => tracing::warn!(group = shard.group, error = %e, "initialising a shard"),
    }
}
