//! Live and ready. Live: the process answers HTTP (a node that cannot even do that is to be
//! restarted). Ready: it can serve what it holds — it belongs to a cluster, knows the shard map,
//! and every group it runs knows a leader and has applied everything it knows to be committed
//! (a replica still catching up after a restart is not ready).

use crate::node_state::NodeState;

/// Why the node is not ready; empty when it is.
pub(crate) fn not_ready(node: &NodeState) -> Vec<String> {
    let mut why = Vec::new();
    if node.cluster.get().is_none() {
        why.push("not in a cluster yet (islab cluster init)".to_string());
        return why;
    }
    if node.map().is_none() {
        why.push("no shard map yet".to_string());
    }
    for shard in node.shards() {
        let m = shard.raft.metrics();
        if m.leader.is_none() {
            why.push(format!("group {} has no leader", shard.group));
        }
        let (applied, committed) = (m.last_applied.unwrap_or(0), m.committed.unwrap_or(0));
        if applied < committed {
            why.push(format!(
                "group {} is catching up (applied {applied} of {committed} committed)",
                shard.group
            ));
        }
    }
    why
}
