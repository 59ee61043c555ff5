//! Where replicas and leaders should go: pure functions over a [`ShardMap`], so the meta
//! leader's controller only carries them out, one step at a time.
//!
//! Replicas: every shard should have `min(replication, eligible nodes)` replicas, none on a
//! node that is draining or gone, and replica counts per node should differ by at most one.
//! Leaders ("gravity"): no node should lead more than `ceil(shards / nodes)` shards.

use std::collections::BTreeMap;

use crate::shard_map::{NodeId, ShardId, ShardMap};

/// One replica change of one shard: add `add` (as a learner that catches up, then a voter),
/// then drop `remove`. At least one of the two is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub shard: ShardId,
    pub add: Option<NodeId>,
    pub remove: Option<NodeId>,
}

/// The members that may take replicas and leaders: those not draining.
fn eligible(map: &ShardMap, members: &[NodeId]) -> Vec<NodeId> {
    members
        .iter()
        .copied()
        .filter(|n| !map.is_draining(*n))
        .collect()
}

/// Replicas per node among `eligible` (zero for a node holding none).
pub fn replica_counts(map: &ShardMap, eligible: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = eligible.iter().map(|&n| (n, 0)).collect();
    for s in &map.shards {
        for r in &s.replicas {
            if let Some(c) = counts.get_mut(r) {
                *c += 1;
            }
        }
    }
    counts
}

/// The next replica change the map needs, or `None` when it is where it should be.
/// `members` are the cluster's nodes; draining ones among them are not eligible.
pub fn plan_move(map: &ShardMap, members: &[NodeId]) -> Option<Move> {
    let eligible = eligible(map, members);
    if eligible.is_empty() {
        return None;
    }
    let want = (map.replication as usize).min(eligible.len());
    let counts = replica_counts(map, &eligible);
    // The least-loaded eligible node not yet holding `shard` (ties: lowest id).
    let target = |replicas: &[NodeId]| {
        counts
            .iter()
            .filter(|(n, _)| !replicas.contains(n))
            .min_by_key(|(n, c)| (**c, **n))
            .map(|(n, _)| *n)
    };

    // 1. Replicas on nodes that are draining or gone move off first.
    for s in &map.shards {
        if let Some(&gone) = s.replicas.iter().find(|r| !eligible.contains(r)) {
            let kept = s.replicas.iter().filter(|r| eligible.contains(r)).count();
            let add = if kept < want {
                target(&s.replicas)
            } else {
                None
            };
            return Some(Move {
                shard: s.id,
                add,
                remove: Some(gone),
            });
        }
    }
    // 2. Too few replicas.
    for s in &map.shards {
        if s.replicas.len() < want
            && let Some(add) = target(&s.replicas)
        {
            return Some(Move {
                shard: s.id,
                add: Some(add),
                remove: None,
            });
        }
    }
    // 3. Too many.
    for s in &map.shards {
        if s.replicas.len() > want {
            let remove = s.replicas.iter().max_by_key(|r| (counts[*r], **r)).copied();
            return Some(Move {
                shard: s.id,
                add: None,
                remove,
            });
        }
    }
    // 4. Uneven: move one replica from the most to the least loaded node.
    let (&max_node, &max) = counts
        .iter()
        .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))?;
    let (&min_node, &min) = counts.iter().min_by_key(|(n, c)| (**c, **n))?;
    if max > min + 1 {
        let shard = map
            .shards
            .iter()
            .find(|s| s.has_replica(max_node) && !s.has_replica(min_node))?;
        return Some(Move {
            shard: shard.id,
            add: Some(min_node),
            remove: Some(max_node),
        });
    }
    None
}

/// The map after `m` is done.
pub fn apply_move(map: &ShardMap, m: &Move) -> ShardMap {
    let mut next = map.next_epoch();
    if let Some(s) = next.shard_mut(m.shard) {
        if let Some(add) = m.add
            && !s.replicas.contains(&add)
        {
            s.replicas.push(add);
        }
        if let Some(remove) = m.remove {
            s.replicas.retain(|r| *r != remove);
        }
        // Once moved, a shard has no founders: whoever joins it later joins as a learner.
        s.founders.clear();
    }
    next
}

/// The most leaders any node should have: `ceil(shards / nodes)`.
pub fn leader_ceiling(shards: usize, nodes: usize) -> usize {
    shards.div_ceil(nodes.max(1))
}

/// One leadership transfer that brings the leader counts closer to even, or `None`.
/// `leaders` maps each shard to its current leader (shards without one are left out);
/// `members` are the nodes that may lead (draining ones are skipped as targets).
pub fn plan_leader_transfer(
    map: &ShardMap,
    leaders: &BTreeMap<ShardId, NodeId>,
    members: &[NodeId],
) -> Option<(ShardId, NodeId)> {
    let eligible = eligible(map, members);
    if eligible.is_empty() {
        return None;
    }
    let mut counts: BTreeMap<NodeId, usize> = eligible.iter().map(|&n| (n, 0)).collect();
    for leader in leaders.values() {
        *counts.entry(*leader).or_default() += 1;
    }
    let ceiling = leader_ceiling(map.shards.len(), eligible.len());
    // Leaders on draining nodes move first, then those over the ceiling, then any spread
    // wider than one.
    let mut sources: Vec<(NodeId, usize)> = counts.iter().map(|(n, c)| (*n, *c)).collect();
    sources.sort_by_key(|(n, c)| (std::cmp::Reverse((map.is_draining(*n), *c)), *n));
    for (from, count) in sources {
        let min = eligible.iter().map(|n| counts[n]).min().unwrap_or(0);
        let must_move = map.is_draining(from) || count > ceiling || count > min + 1;
        if !must_move || count == 0 {
            continue;
        }
        // The shard led by `from` with a replica on the least-loaded eligible node.
        let mut best: Option<(usize, NodeId, ShardId)> = None;
        for (shard, _) in leaders.iter().filter(|(_, l)| **l == from) {
            let Some(info) = map.shard(*shard) else {
                continue;
            };
            for to in info.replicas.iter().filter(|r| **r != from) {
                if let Some(&c) = eligible.contains(to).then(|| &counts[to])
                    && (map.is_draining(from) || c + 1 < count)
                    && best.is_none_or(|(bc, bn, _)| (c, *to) < (bc, bn))
                {
                    best = Some((c, *to, *shard));
                }
            }
        }
        if let Some((_, to, shard)) = best {
            return Some((shard, to));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Applies planned moves until none is left; panics if that takes too long.
    fn settle(mut map: ShardMap, members: &[NodeId]) -> (ShardMap, usize) {
        for step in 0..10_000 {
            match plan_move(&map, members) {
                None => return (map, step),
                Some(m) => {
                    assert!(m.add.is_some() || m.remove.is_some());
                    map = apply_move(&map, &m);
                    map.validate().unwrap();
                }
            }
        }
        panic!("placement did not settle: {map:?}");
    }

    fn check_settled(map: &ShardMap, members: &[NodeId]) {
        let eligible: Vec<_> = members
            .iter()
            .copied()
            .filter(|n| !map.is_draining(*n))
            .collect();
        let want = (map.replication as usize).min(eligible.len());
        for s in &map.shards {
            assert_eq!(s.replicas.len(), want, "{s:?}");
            assert!(s.replicas.iter().all(|r| eligible.contains(r)), "{s:?}");
        }
        let counts = replica_counts(map, &eligible);
        let (min, max) = (counts.values().min(), counts.values().max());
        assert!(max.unwrap() - min.unwrap() <= 1, "{counts:?}");
    }

    #[test]
    fn a_new_node_gets_its_share_and_a_drained_one_gives_all_back() {
        let map = ShardMap::new(16, 3, &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            plan_move(&map, &[1, 2, 3, 4, 5]),
            None,
            "a new map is settled"
        );
        let (grown, steps) = settle(map, &[1, 2, 3, 4, 5, 6]);
        check_settled(&grown, &[1, 2, 3, 4, 5, 6]);
        assert!(
            steps >= 7,
            "node 6 should take about 8 of 48 replicas, took {steps}"
        );

        let mut draining = grown.clone();
        draining.draining = vec![5, 6];
        let (shrunk, _) = settle(draining, &[1, 2, 3, 4, 5, 6]);
        check_settled(&shrunk, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(shrunk.shards_of(5).count() + shrunk.shards_of(6).count(), 0);
    }

    #[test]
    fn replication_follows_the_node_count_down_and_up() {
        let map = ShardMap::new(4, 3, &[1, 2, 3]).unwrap();
        let mut draining = map.clone();
        draining.draining = vec![3];
        let (two, _) = settle(draining, &[1, 2, 3]);
        assert!(two.shards.iter().all(|s| s.replicas.len() == 2));
        let mut back = two.clone();
        back.draining.clear();
        let (three, _) = settle(back, &[1, 2, 3, 4]);
        check_settled(&three, &[1, 2, 3, 4]);
    }

    #[test]
    fn a_moved_shard_has_no_founders() {
        let map = ShardMap::new(2, 1, &[1]).unwrap();
        let m = plan_move(&map, &[1, 2]).unwrap();
        let next = apply_move(&map, &m);
        assert_eq!(next.epoch, map.epoch + 1);
        assert!(next.shard(m.shard).unwrap().founders.is_empty());
    }

    #[test]
    fn leaders_spread_to_the_ceiling() {
        let map = ShardMap::new(16, 3, &[1, 2, 3, 4, 5]).unwrap();
        // Everything led by node 1 where it can be.
        let mut leaders: BTreeMap<ShardId, NodeId> = map
            .shards
            .iter()
            .map(|s| (s.id, if s.has_replica(1) { 1 } else { s.replicas[0] }))
            .collect();
        let members = [1, 2, 3, 4, 5];
        for _ in 0..100 {
            let Some((shard, to)) = plan_leader_transfer(&map, &leaders, &members) else {
                break;
            };
            assert!(map.shard(shard).unwrap().has_replica(to));
            leaders.insert(shard, to);
        }
        let mut counts = BTreeMap::<NodeId, usize>::new();
        for l in leaders.values() {
            *counts.entry(*l).or_default() += 1;
        }
        let ceiling = leader_ceiling(16, 5);
        assert!(counts.values().all(|c| *c <= ceiling), "{counts:?}");
        assert_eq!(plan_leader_transfer(&map, &leaders, &members), None);
    }

    #[test]
    fn draining_nodes_lose_their_leaders() {
        let mut map = ShardMap::new(3, 3, &[1, 2, 3]).unwrap();
        map.draining = vec![1];
        let leaders = BTreeMap::from([(1, 1), (2, 2), (3, 3)]);
        let (shard, to) = plan_leader_transfer(&map, &leaders, &[1, 2, 3]).unwrap();
        assert_eq!(shard, 1);
        assert_ne!(to, 1);
    }

    proptest! {
        #[test]
        fn any_membership_change_settles_evenly(
            shards in 1u32..40,
            replication in 1u32..5,
            start in 1u64..7,
            added in 0u64..4,
            drained in 0u64..3,
        ) {
            let nodes: Vec<NodeId> = (1..=start).collect();
            let mut map = ShardMap::new(shards, replication, &nodes).unwrap();
            let members: Vec<NodeId> = (1..=start + added).collect();
            map.draining = (1..=drained.min(start + added - 1)).collect();
            let (settled, _) = settle(map, &members);
            check_settled(&settled, &members);
        }
    }
}
