//! [`ShardMap`]: slot ranges, their shards, and each shard's replicas, at one epoch.

use serde::{Deserialize, Serialize};

use crate::slot::{SLOTS, slot_of};

/// A node's id, as in the cluster's membership.
pub type NodeId = u64;

/// A shard's id, which is also the id of its Raft group on every replica (group 0 is the meta
/// group, so shards count from 1).
pub type ShardId = u64;

/// One shard: a contiguous range of slots and the nodes that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub id: ShardId,
    /// First slot of the range.
    pub slot_start: u16,
    /// One past the last slot of the range.
    pub slot_end: u16,
    /// The nodes that hold (or are about to hold) a replica. The first is the preferred
    /// leader at creation.
    pub replicas: Vec<NodeId>,
    /// The nodes that create the shard's Raft group together. Only a shard that has never
    /// moved has founders: a node added later joins as a learner and must never initialise.
    pub founders: Vec<NodeId>,
}

impl ShardInfo {
    pub fn has_replica(&self, node: NodeId) -> bool {
        self.replicas.contains(&node)
    }

    pub fn slots(&self) -> u32 {
        u32::from(self.slot_end - self.slot_start)
    }
}

/// The whole map at one epoch. Every change makes a new map with `epoch + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    pub epoch: u64,
    /// Replicas each shard should have (fewer while the cluster has fewer nodes).
    pub replication: u32,
    /// Sorted by slot range; the ranges cover every slot once.
    pub shards: Vec<ShardInfo>,
    /// Nodes being removed: their replicas move off, and nothing moves onto them.
    pub draining: Vec<NodeId>,
}

impl ShardMap {
    /// The first map of a cluster: `shards` equal slot ranges, each on `replication` of
    /// `nodes` (fewer if there are fewer nodes), placed round-robin so replicas and preferred
    /// leaders are spread evenly.
    pub fn new(shards: u32, replication: u32, nodes: &[NodeId]) -> Result<ShardMap, String> {
        if shards == 0 || shards > u32::from(SLOTS) {
            return Err(format!(
                "the number of shards must be between 1 and {SLOTS}, not {shards}"
            ));
        }
        if replication == 0 {
            return Err("the replication factor must be at least 1".into());
        }
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() {
            return Err("a shard map needs at least one node".into());
        }
        let per = (replication as usize).min(nodes.len());
        let map = ShardMap {
            epoch: 1,
            replication,
            shards: (0..shards)
                .map(|i| {
                    let replicas: Vec<NodeId> = (0..per)
                        .map(|j| nodes[(i as usize + j) % nodes.len()])
                        .collect();
                    ShardInfo {
                        id: u64::from(i) + 1,
                        slot_start: (i * u32::from(SLOTS) / shards) as u16,
                        slot_end: ((i + 1) * u32::from(SLOTS) / shards) as u16,
                        founders: replicas.clone(),
                        replicas,
                    }
                })
                .collect(),
            draining: Vec::new(),
        };
        map.validate()?;
        Ok(map)
    }

    /// Checks what every map must satisfy: ranges in order covering every slot once, shard
    /// ids non-zero and unique, each shard with at least one replica and no duplicates.
    pub fn validate(&self) -> Result<(), String> {
        let mut next = 0u16;
        let mut ids = std::collections::BTreeSet::new();
        for s in &self.shards {
            if s.id == 0 || !ids.insert(s.id) {
                return Err(format!("shard id {} is zero or used twice", s.id));
            }
            if s.slot_start != next || s.slot_end <= s.slot_start {
                return Err(format!(
                    "shard {} covers slots {}..{}, expected a range starting at {next}",
                    s.id, s.slot_start, s.slot_end
                ));
            }
            next = s.slot_end;
            let mut r = s.replicas.clone();
            r.sort_unstable();
            r.dedup();
            if r.is_empty() || r.len() != s.replicas.len() {
                return Err(format!("shard {} has no replica or one twice", s.id));
            }
        }
        if next != SLOTS {
            return Err(format!("the shards cover slots 0..{next}, not 0..{SLOTS}"));
        }
        Ok(())
    }

    /// The shard holding `slot`.
    pub fn shard_of_slot(&self, slot: u16) -> &ShardInfo {
        let i = self.shards.partition_point(|s| s.slot_end <= slot);
        &self.shards[i.min(self.shards.len() - 1)]
    }

    /// The shard holding `key`.
    pub fn shard_of_key(&self, key: &[u8]) -> &ShardInfo {
        self.shard_of_slot(slot_of(key))
    }

    pub fn shard(&self, id: ShardId) -> Option<&ShardInfo> {
        self.shards.iter().find(|s| s.id == id)
    }

    pub fn shard_mut(&mut self, id: ShardId) -> Option<&mut ShardInfo> {
        self.shards.iter_mut().find(|s| s.id == id)
    }

    /// The shards `node` holds a replica of.
    pub fn shards_of(&self, node: NodeId) -> impl Iterator<Item = &ShardInfo> {
        self.shards.iter().filter(move |s| s.has_replica(node))
    }

    pub fn is_draining(&self, node: NodeId) -> bool {
        self.draining.contains(&node)
    }

    /// A copy at the next epoch, to be changed and proposed.
    pub fn next_epoch(&self) -> ShardMap {
        let mut next = self.clone();
        next.epoch += 1;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_map_covers_every_slot_and_spreads_replicas() {
        let map = ShardMap::new(16, 3, &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(map.shards.len(), 16);
        assert_eq!(map.shards.iter().map(ShardInfo::slots).sum::<u32>(), 4096);
        for node in 1..=5 {
            let n = map.shards_of(node).count();
            assert!((9..=10).contains(&n), "node {node} holds {n} replicas");
            let first = map.shards.iter().filter(|s| s.replicas[0] == node).count();
            assert!((3..=4).contains(&first), "node {node} is first in {first}");
        }
        for s in &map.shards {
            assert_eq!(s.replicas.len(), 3);
            assert_eq!(s.founders, s.replicas);
        }
        for slot in [0, 1, 255, 256, 4095] {
            let s = map.shard_of_slot(slot);
            assert!(
                s.slot_start <= slot && slot < s.slot_end,
                "slot {slot} in {s:?}"
            );
        }
    }

    #[test]
    fn replication_is_capped_by_the_nodes_there_are() {
        let map = ShardMap::new(4, 3, &[7]).unwrap();
        assert!(map.shards.iter().all(|s| s.replicas == [7]));
        let odd = ShardMap::new(3, 3, &[1, 2]).unwrap();
        assert!(odd.shards.iter().all(|s| s.replicas.len() == 2));
    }

    #[test]
    fn bad_maps_are_refused_with_a_reason() {
        assert!(
            ShardMap::new(0, 3, &[1])
                .unwrap_err()
                .contains("between 1 and 4096")
        );
        assert!(ShardMap::new(4097, 3, &[1]).is_err());
        assert!(ShardMap::new(4, 0, &[1]).is_err());
        assert!(ShardMap::new(4, 3, &[]).is_err());
        let mut gap = ShardMap::new(4, 1, &[1]).unwrap();
        gap.shards[1].slot_start += 1;
        assert!(gap.validate().unwrap_err().contains("shard 2"));
        let mut twice = ShardMap::new(4, 1, &[1]).unwrap();
        twice.shards[0].replicas.push(1);
        assert!(twice.validate().is_err());
    }
}
