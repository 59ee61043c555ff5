//! The cluster-wide picture: every node's status gathered, each shard's leader and figures,
//! and how evenly keys, bytes, ops and leaders spread ("entropy").

use std::collections::BTreeMap;
use std::time::Duration;

use islab_proto::v1::{
    Entropy, GroupStatus, ShardListResponse, ShardRow, StatusRequest, StatusResponse,
};

use crate::admin::status::local_status;
use crate::error::{Error, Result};
use crate::node_state::{META_GROUP, NodeState};

/// How long a node has to answer a status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Every member's status; members that did not answer in time are listed apart.
pub(crate) struct View {
    pub statuses: BTreeMap<u64, StatusResponse>,
    pub unreachable: Vec<u64>,
}

impl View {
    /// Each data shard's leader (as the leader itself reports, highest term first) and the
    /// leader's view of the group.
    pub fn leaders(&self) -> BTreeMap<u64, (u64, &GroupStatus)> {
        let mut leaders: BTreeMap<u64, (u64, &GroupStatus)> = BTreeMap::new();
        for (node, status) in &self.statuses {
            for g in &status.groups {
                if g.group_id == META_GROUP || g.role != "leader" {
                    continue;
                }
                match leaders.get(&g.group_id) {
                    Some((_, held)) if held.term >= g.term => {}
                    _ => {
                        leaders.insert(g.group_id, (*node, g));
                    }
                }
            }
        }
        leaders
    }
}

/// Asks every member of the meta group for its status, in parallel.
pub(crate) async fn view(node: &NodeState) -> View {
    let nodes = node.nodes();
    let asks = nodes.iter().map(|(id, addr)| async move {
        if *id == node.id() {
            return (*id, Some(local_status(node)));
        }
        let Ok(mut admin) = node.peers.admin(addr) else {
            return (*id, None);
        };
        let answer = tokio::time::timeout(STATUS_TIMEOUT, admin.status(StatusRequest {})).await;
        (
            *id,
            answer.ok().and_then(|r| r.ok()).map(|r| r.into_inner()),
        )
    });
    let mut view = View {
        statuses: BTreeMap::new(),
        unreachable: Vec::new(),
    };
    for (id, status) in futures::future::join_all(asks).await {
        match status {
            Some(s) => {
                view.statuses.insert(id, s);
            }
            None => view.unreachable.push(id),
        }
    }
    view
}

/// The answer to `islab shard list`.
pub(crate) async fn gather(node: &NodeState) -> Result<ShardListResponse> {
    let map = node.map().ok_or_else(|| {
        Error::Unavailable("no shard map on this node yet (is the cluster initialised?)".into())
    })?;
    let view = view(node).await;
    let leaders = view.leaders();
    let mut rows = Vec::new();
    for info in &map.shards {
        // The leader's figures, else the most advanced replica's.
        let group = leaders.get(&info.id).map(|(_, g)| *g).or_else(|| {
            view.statuses
                .values()
                .flat_map(|s| s.groups.iter())
                .filter(|g| g.group_id == info.id)
                .max_by_key(|g| g.applied_index)
        });
        rows.push(ShardRow {
            shard: info.id,
            slot_start: u32::from(info.slot_start),
            slot_end: u32::from(info.slot_end),
            replicas: info.replicas.clone(),
            leader_id: leaders.get(&info.id).map_or(0, |(n, _)| *n),
            keys: group.map_or(0, |g| g.keys),
            bytes: group.map_or(0, |g| g.bytes),
            ops_per_sec: group.map_or(0.0, |g| g.ops_per_sec),
            applied_index: group.map_or(0, |g| g.applied_index),
        });
    }
    let entropy = entropy(&rows, &view.statuses);
    Ok(ShardListResponse {
        map: Some(islab_proto::v1::ShardMap::from_map(&map, &node.nodes())),
        shards: rows,
        entropy: Some(entropy),
        unreachable: view.unreachable,
    })
}

/// Normalised Shannon entropy of a distribution: 1 when every share is equal, 0 when one
/// holds everything. Nothing at all counts as even.
pub(crate) fn evenness(values: &[f64]) -> f64 {
    let total: f64 = values.iter().sum();
    if values.len() < 2 || total <= 0.0 {
        return 1.0;
    }
    let h: f64 = values
        .iter()
        .filter(|v| **v > 0.0)
        .map(|v| {
            let p = v / total;
            -p * p.ln()
        })
        .sum();
    (h / (values.len() as f64).ln()).clamp(0.0, 1.0)
}

fn entropy(rows: &[ShardRow], statuses: &BTreeMap<u64, StatusResponse>) -> Entropy {
    let col = |f: fn(&ShardRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    // Per node: what its replicas hold, and what the shards it leads do.
    let mut keys = Vec::new();
    let mut bytes = Vec::new();
    let mut ops = Vec::new();
    let mut leaders = Vec::new();
    for (node, status) in statuses {
        let data = || status.groups.iter().filter(|g| g.group_id != META_GROUP);
        keys.push(data().map(|g| g.keys as f64).sum());
        bytes.push(data().map(|g| g.bytes as f64).sum());
        ops.push(
            rows.iter()
                .filter(|r| r.leader_id == *node)
                .map(|r| r.ops_per_sec)
                .sum(),
        );
        leaders.push(rows.iter().filter(|r| r.leader_id == *node).count() as f64);
    }
    Entropy {
        shard_keys: evenness(&col(|r| r.keys as f64)),
        shard_bytes: evenness(&col(|r| r.bytes as f64)),
        shard_ops: evenness(&col(|r| r.ops_per_sec)),
        node_keys: evenness(&keys),
        node_bytes: evenness(&bytes),
        node_ops: evenness(&ops),
        node_leaders: evenness(&leaders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenness_is_one_when_even_and_zero_when_all_in_one_place() {
        assert_eq!(evenness(&[5.0, 5.0, 5.0, 5.0]), 1.0);
        assert_eq!(evenness(&[9.0, 0.0, 0.0]), 0.0);
        assert_eq!(evenness(&[]), 1.0);
        assert_eq!(evenness(&[0.0, 0.0]), 1.0, "nothing is evenly spread");
        let skewed = evenness(&[8.0, 1.0, 1.0]);
        assert!(skewed > 0.4 && skewed < 0.7, "{skewed}");
    }
}
