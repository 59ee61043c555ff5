//! The shard map between its wire form (`islab.v1.ShardMap`) and `islab_shardmap::ShardMap`.

use std::collections::BTreeMap;

use islab_shardmap::{NodeId, ShardInfo, ShardMap};

use crate::v1;

impl v1::ShardMap {
    /// The wire form of `map`, with the addresses of the nodes it names.
    pub fn from_map(map: &ShardMap, nodes: &BTreeMap<NodeId, String>) -> v1::ShardMap {
        v1::ShardMap {
            epoch: map.epoch,
            replication: map.replication,
            shards: map
                .shards
                .iter()
                .map(|s| v1::ShardReplicas {
                    id: s.id,
                    slot_start: u32::from(s.slot_start),
                    slot_end: u32::from(s.slot_end),
                    replicas: s.replicas.clone(),
                    founders: s.founders.clone(),
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|(id, addr)| v1::NodeAddr {
                    id: *id,
                    addr: addr.clone(),
                })
                .collect(),
            draining: map.draining.clone(),
        }
    }

    /// The map and node addresses this message describes; an error names what is wrong
    /// with a malformed one.
    pub fn to_map(&self) -> Result<(ShardMap, BTreeMap<NodeId, String>), String> {
        let slot = |n: u32| u16::try_from(n).map_err(|_| format!("slot {n} is out of range"));
        let shards = self
            .shards
            .iter()
            .map(|s| {
                Ok(ShardInfo {
                    id: s.id,
                    slot_start: slot(s.slot_start)?,
                    slot_end: slot(s.slot_end)?,
                    replicas: s.replicas.clone(),
                    founders: s.founders.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let map = ShardMap {
            epoch: self.epoch,
            replication: self.replication,
            shards,
            draining: self.draining.clone(),
        };
        map.validate()?;
        let nodes = self.nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        Ok((map, nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_survives_the_wire() {
        let map = ShardMap::new(8, 3, &[1, 2, 3]).unwrap();
        let nodes = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".into()), (3, "c:3".into())]);
        let wire = v1::ShardMap::from_map(&map, &nodes);
        assert_eq!(wire.to_map().unwrap(), (map, nodes));
        let mut bad = wire;
        bad.shards[0].slot_end = 70_000;
        assert!(bad.to_map().unwrap_err().contains("70000"));
    }
}
