//! Quiescence: idle groups stop heartbeating, so a node with many shards costs little CPU when
//! nothing happens.
//!
//! ```text
//! leader of group g, idle ≥ QUIESCE_AFTER and every replica caught up
//!   └─ pauses g's heartbeats and ticks; its node's pings list g as quiesced
//! follower of g, whose leader's node pings and lists g
//!   └─ holds its election timer and ticks for g (openraft `elect(false)`, `tick(false)`)
//! leader's node stops pinging for LIVENESS_TIMEOUT (crashed, partitioned)
//!   └─ followers elect again at once: a leader that cannot be heard is not trusted
//! a write or read on g, or a new term
//!   └─ heartbeats resume before the request goes on; the next ping drops g from the list
//! ```
//!
//! One ping per peer node per `PING_INTERVAL` replaces, for idle groups, a heartbeat per group
//! per follower per heartbeat interval. Safety never rests on this: pausing elections only
//! delays a failover, and the liveness timeout bounds the delay by about one election timeout.

use std::sync::Arc;
use std::time::Duration;

use islab_proto::raft::v1::PingRequest;

use crate::node_state::{META_GROUP, NodeState};

/// How often each node pings every other.
pub(crate) const PING_INTERVAL: Duration = Duration::from_millis(200);
/// A ping naming the groups its sender leads is trusted for leader hints this long.
pub(crate) const LEADER_HINT_TTL: Duration = Duration::from_secs(1);

/// Pings every peer and applies the quiescence rules to every data group, every
/// `PING_INTERVAL`, until the node stops.
pub(crate) async fn run(state: Arc<NodeState>) {
    let timeout = Duration::from_millis(state.config.raft.election_timeout_min_ms);
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let me = state.id();
        let mut quiesced = Vec::new();
        let mut leading = Vec::new();
        for shard in state.shards() {
            if shard.group == META_GROUP {
                continue;
            }
            shard.quiet.tick(&shard.raft, me, &state.liveness, timeout);
            if shard.quiet.is_paused() {
                quiesced.push(shard.group);
            }
            if shard.is_leader(me) {
                leading.push(shard.group);
            }
        }
        let Some(cluster_id) = state.cluster.get() else {
            continue;
        };
        for (id, addr) in state.nodes().iter() {
            if *id == me {
                continue;
            }
            let Ok(mut client) = state.peers.client(addr) else {
                continue;
            };
            let ping = PingRequest {
                cluster_id: cluster_id.clone(),
                from: me,
                quiesced: quiesced.clone(),
                leading: leading.clone(),
            };
            // Fire and forget: a lost ping only lets followers elect, which is always safe.
            state.tasks.spawn(async move {
                let _ = tokio::time::timeout(PING_INTERVAL * 2, client.ping(ping)).await;
            });
        }
    }
}
