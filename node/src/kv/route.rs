//! Where a request goes: this node's copy of the shard map says which shard holds a key, and
//! the node either has a replica of it or names one that does (the shard's leader when its
//! pings tell, so that a client following the hint lands on the leader in one redirect).

use std::sync::Arc;

use bytes::Bytes;
use islab_proto::v1::ShardMap as ProtoShardMap;
use islab_shardmap::{ShardInfo, ShardMap};
use tonic::metadata::MetadataMap;

use crate::control::quiesce;
use crate::error::{Error, Result};
use crate::node_state::NodeState;
use crate::shard::Shard;

/// The shard map, once this node is in an initialised cluster and has the map; checks the
/// request's epoch against it.
pub(crate) fn map(node: &NodeState, metadata: &MetadataMap) -> Result<Arc<ShardMap>> {
    if node.cluster.get().is_none() {
        // Retryable: right after init, a follower may not have heard from the leader yet.
        return Err(Error::Unavailable(
            "this node has not joined a cluster yet (is the cluster initialised? islab cluster init)"
                .into(),
        ));
    }
    let map = node
        .map()
        .ok_or_else(|| Error::Unavailable("the shard map has not reached this node yet".into()))?;
    if let Some(theirs) = metadata.get(islab_proto::EPOCH_METADATA) {
        let theirs: u64 = theirs
            .to_str()
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} must be a decimal epoch",
                    islab_proto::EPOCH_METADATA
                ))
            })?;
        if theirs < map.epoch {
            return Err(Error::StaleEpoch {
                theirs,
                map: Box::new(ProtoShardMap::from_map(&map, &node.nodes())),
            });
        }
    }
    Ok(map)
}

/// The local replica of `info`, or a redirect to a node that has one.
pub(crate) fn replica(node: &NodeState, info: &ShardInfo) -> Result<Arc<Shard>> {
    if let Ok(shard) = node.shard(info.id) {
        return Ok(shard);
    }
    let nodes = node.nodes();
    // The shard's leader, as its node's pings tell, else any replica (which hints the leader).
    let leader = node
        .liveness
        .leader_of(info.id, quiesce::LEADER_HINT_TTL)
        .filter(|l| info.replicas.contains(l));
    let elsewhere = leader
        .into_iter()
        .chain(info.replicas.iter().copied())
        .filter(|r| *r != node.id())
        .find_map(|r| nodes.get(&r).cloned());
    match elsewhere {
        Some(addr) => Err(Error::NotLeader { leader: Some(addr) }),
        None => Err(Error::Unavailable(format!(
            "shard {} has no replica this node knows of",
            info.id
        ))),
    }
}

/// The local replica of the shard holding `key`.
pub(crate) fn key(node: &NodeState, key: &[u8], metadata: &MetadataMap) -> Result<Arc<Shard>> {
    let map = map(node, metadata)?;
    replica(node, map.shard_of_key(key))
}

/// A "not the leader" that names no leader (openraft knows none: an election or a leadership
/// transfer under way) names the node whose pings say it leads the group, if one does, so
/// that a client following hints is not left guessing.
pub(crate) fn with_hint(node: &NodeState, group: u64, e: Error) -> Error {
    match e {
        Error::NotLeader { leader: None } => {
            let nodes = node.nodes();
            let leader = node
                .liveness
                .leader_of(group, quiesce::LEADER_HINT_TTL)
                .filter(|l| *l != node.id())
                .and_then(|l| nodes.get(&l).cloned());
            Error::NotLeader { leader }
        }
        other => other,
    }
}

/// The one shard every key is in, or INVALID_ARGUMENT naming two keys of different shards
/// (`why` says why they must share one).
pub(crate) fn one_shard<'m, 'k>(
    map: &'m ShardMap,
    keys: impl IntoIterator<Item = &'k Bytes>,
    why: &str,
) -> Result<&'m ShardInfo> {
    let mut first: Option<(&ShardInfo, &Bytes)> = None;
    for key in keys {
        let here = map.shard_of_key(key);
        match first {
            None => first = Some((here, key)),
            Some((info, first_key)) if info.id != here.id => {
                return Err(Error::InvalidArgument(format!(
                    "{why}, and its keys span shards {} ({:?}) and {} ({:?}): give keys that \
                     belong together a common hash tag, like {{user42}}:name and \
                     {{user42}}:cart",
                    info.id,
                    String::from_utf8_lossy(first_key),
                    here.id,
                    String::from_utf8_lossy(key)
                )));
            }
            Some(_) => {}
        }
    }
    first
        .map(|(info, _)| info)
        .ok_or_else(|| Error::InvalidArgument("the request names no key".into()))
}
