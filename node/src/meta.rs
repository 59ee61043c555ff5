//! The meta group's state: the node list is its Raft membership, and the shard map is one
//! reserved key in its store, changed only by compare-and-swap so that two writers can never
//! both build on the same map.

use std::collections::BTreeMap;

use bytes::Bytes;
use islab_shardmap::ShardMap;
use islab_storage::{Command, Request, Response, codec};

use crate::error::{Error, Result};
use crate::shard::Shard;

/// Where the shard map lives in the meta group's store.
pub(crate) const MAP_KEY: &[u8] = b"\xffislab/meta/shard-map";

/// The map in `meta`'s store and the version (log index) it was written at.
pub(crate) fn read_map(meta: &Shard) -> Result<Option<(ShardMap, u64)>> {
    let Some(v) = meta.store.current().get(MAP_KEY) else {
        return Ok(None);
    };
    let map: ShardMap = codec::decode(&v.value)
        .map_err(|e| Error::Internal(format!("the stored shard map does not decode: {e}")))?;
    Ok(Some((map, v.version)))
}

/// Writes `map` if the stored one is still at `expected` (`None`: no map yet). Returns
/// whether it was written; must run on the meta leader.
pub(crate) async fn propose_map(
    meta: &Shard,
    expected: Option<u64>,
    map: &ShardMap,
) -> Result<bool> {
    map.validate()
        .map_err(|e| Error::Internal(format!("refusing to write a bad shard map: {e}")))?;
    let value = Bytes::from(codec::encode(map)?);
    let request = Request {
        id: None,
        command: Command::Cas {
            key: Bytes::from_static(MAP_KEY),
            expected,
            value,
            expires_at: None,
        },
    };
    match meta.write(request).await? {
        (Response::Cas { succeeded, .. }, _) => {
            if succeeded {
                tracing::info!(epoch = map.epoch, "shard map written");
            }
            Ok(succeeded)
        }
        (other, _) => Err(Error::Internal(format!(
            "unexpected answer to a map write: {other:?}"
        ))),
    }
}

/// Node id → address of every member of the meta group (voters and learners).
pub(crate) fn members(meta: &Shard) -> BTreeMap<u64, String> {
    meta.raft
        .metrics()
        .nodes
        .into_iter()
        .map(|(id, node)| (id, node.addr))
        .collect()
}

/// Whether this node leads the meta group.
pub(crate) fn is_leader(meta: &Shard, me: u64) -> bool {
    meta.raft.is_leader(me)
}
