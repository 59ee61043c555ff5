//! The steps of a membership change that talk to more than the meta group: probing a node
//! before it joins (right address, same cluster), making the cluster id at init, and draining
//! a node (its replicas moved off by the controller) before it leaves.

use std::collections::BTreeMap;
use std::time::Duration;

use islab_proto::v1::StatusRequest;
use islab_proto::v1::admin_client::AdminClient;
use islab_raft::Node;

use crate::error::{Error, Result};
use crate::meta;
use crate::node_state::NodeState;
use crate::shard::Shard;

/// Asks the node at `addr` who it is, so a wrong address or a node of another cluster is
/// refused before it becomes a member.
pub(super) async fn probe(node: &NodeState, id: u64, addr: &str) -> Result<()> {
    let unreachable =
        |e: String| Error::Rejected(format!("cannot reach node {id} at {addr} to add it: {e}"));
    let dial = node.peers.dial_addr(addr);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{dial}"))
        .map_err(|e| Error::InvalidArgument(format!("bad address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = AdminClient::new(channel)
        .status(StatusRequest {})
        .await
        .map_err(|e| unreachable(e.message().to_string()))?
        .into_inner();
    if status.node_id != id {
        return Err(Error::Rejected(format!(
            "the node at {addr} is node {}, not node {id}",
            status.node_id
        )));
    }
    let ours = node.cluster.get().unwrap_or_default();
    if !status.cluster_id.is_empty() && status.cluster_id != ours {
        return Err(Error::Rejected(format!(
            "node {id} at {addr} belongs to another cluster ({}); give it an empty data directory",
            status.cluster_id
        )));
    }
    Ok(())
}

/// Makes a cluster id and initialises the meta group with `nodes` as voters.
pub(super) async fn init_meta(
    node: &NodeState,
    shard: &Shard,
    nodes: BTreeMap<u64, Node>,
) -> Result<String> {
    let cluster_id = node.cluster.create().await?;
    match shard.raft.initialize(nodes).await {
        Ok(()) => {}
        Err(e @ islab_raft::Error::AlreadyInitialised { .. }) => return Err(e.into()),
        Err(e) => {
            // Nothing was initialised: forget the id so a corrected init can be tried.
            node.cluster.abandon(&cluster_id).await?;
            return Err(Error::Unavailable(format!("init failed: {e}")));
        }
    }
    Ok(cluster_id)
}

/// Takes node `id` off the map's draining list, if it is on it.
pub(super) async fn undrain(meta: &Shard, id: u64) -> Result<()> {
    if let Some((map, version)) = meta::read_map(meta)?
        && map.is_draining(id)
    {
        let mut next = map.next_epoch();
        next.draining.retain(|n| *n != id);
        meta::propose_map(meta, Some(version), &next).await?;
    }
    Ok(())
}

/// Marks `id` draining and fails with a retryable error until no shard has a replica on
/// it any more (the controller moves them).
pub(super) async fn drain(meta: &Shard, id: u64) -> Result<()> {
    let Some((map, version)) = meta::read_map(meta)? else {
        return Ok(());
    };
    let left = map.shards_of(id).count();
    if left == 0 {
        return Ok(());
    }
    let members = meta::members(meta);
    if members.keys().all(|m| *m == id || map.is_draining(*m)) {
        return Err(Error::Rejected(format!(
            "node {id} is the last node that could hold the data; add another first"
        )));
    }
    if !map.is_draining(id) {
        let mut next = map.next_epoch();
        next.draining.push(id);
        meta::propose_map(meta, Some(version), &next).await?;
        tracing::info!(node = id, "draining");
    }
    Err(Error::Unavailable(format!(
        "node {id} is draining: {left} replicas still to move off; retry to finish the removal"
    )))
}
