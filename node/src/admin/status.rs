//! What one node says about itself: its WAL, and each group it holds (role, indexes, keys,
//! members, load). The `Status` RPC answers with it; the cluster view (`shard_list`) gathers
//! it from every node.

use islab_proto::v1::{GroupStatus, Member, StatusResponse};

use crate::node_state::NodeState;
use crate::shard::Shard;

/// This node's view of itself and of every group it holds.
pub(crate) fn local_status(node: &NodeState) -> StatusResponse {
    let stats = node.wal.stats();
    let groups = node
        .shards()
        .iter()
        .map(|shard| {
            let m = shard.raft.metrics();
            let store = shard.store.current();
            let (members, _) = members(shard);
            let wal_state = node.wal.log_state(shard.group);
            let (read_requests, keys_read) = shard.reads_served();
            let (write_entries, write_requests) = shard.writes.proposed();
            GroupStatus {
                group_id: shard.group,
                role: format!("{:?}", m.role).to_lowercase(),
                leader_id: m.leader.unwrap_or(0),
                leader_addr: shard.leader_addr().unwrap_or_default(),
                term: m.term,
                last_log_index: m.last_log_index.unwrap_or(0),
                commit_index: m.committed.unwrap_or(0),
                applied_index: m.last_applied.unwrap_or(0),
                checkpoint_index: m.snapshot.unwrap_or(0),
                purged_index: wal_state.purged.map_or(0, |p| p.index),
                keys: store.user_keys(),
                bytes: store.user_bytes(),
                members,
                ops_per_sec: shard.ops_per_sec(),
                read_requests,
                keys_read,
                write_entries,
                write_requests,
                read_rounds: shard.reads.rounds(),
                quiesced: shard.quiet.is_quiet(),
            }
        })
        .collect();
    StatusResponse {
        node_id: node.id(),
        addr: node.advertise.clone(),
        cluster_id: node.cluster.get().unwrap_or_default(),
        durability: node.config.wal.durability.to_string(),
        wal_bytes: stats.bytes,
        wal_segments: stats.segments,
        wal_fsyncs: stats.fsyncs,
        groups,
        version: env!("CARGO_PKG_VERSION").to_string(),
        epoch: node.map().map_or(0, |m| m.epoch),
    }
}

/// The members of a group as its latest membership config says.
pub(crate) fn members(shard: &Shard) -> (Vec<Member>, u64) {
    let m = shard.raft.metrics();
    let members = m
        .nodes
        .iter()
        .map(|(id, node)| Member {
            id: *id,
            addr: node.addr.clone(),
            voter: m.voters.contains(id),
        })
        .collect();
    (members, m.leader.unwrap_or(0))
}
