//! The meta leader's controller: carries out, one step at a time, what `placement` says the
//! shard map needs — replicas onto new nodes and off draining ones, the replication factor
//! kept, and leaders spread evenly ("gravity").
//!
//! ```text
//! every tick, on the meta leader only:
//!   gather every node's status ── shard leaders and their voters
//!   a shard whose voters differ from the map (a move cut short):
//!     voters the map lacks ─► drop them from the group; replicas the group lacks ─► drop
//!     them from the map (a later move adds what is missing, with a catch-up)
//!   else the next planned move:
//!     1. map += new replica            (epoch + 1; the new node starts the group, empty)
//!     2. shard leader: add it as a learner, wait until caught up, make the voter set
//!        the map's minus the leaving replica           (one membership change per group)
//!     3. map -= leaving replica        (epoch + 1; the leaving node stops the group)
//!   else one leadership transfer towards an even spread
//! ```
//!
//! Only one move runs at a time in the whole cluster, and every step is idempotent, so a
//! controller that dies half-way is simply continued by the next meta leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use islab_proto::v1::{MoveReplicaRequest, TransferLeaderRequest};
use islab_shardmap::ShardMap;
use islab_shardmap::placement::{self, Move};
use tokio::task::JoinHandle;

use crate::admin::shard_list::{self, View};
use crate::error::{Error, Result};
use crate::meta;
use crate::node_state::NodeState;
use crate::shard::Shard;

const TICK: Duration = Duration::from_millis(500);
/// After a round that found nothing to do, the controller looks again this much later:
/// gathering every node's status is the controller's whole cost on an idle cluster.
const IDLE_TICK: Duration = Duration::from_secs(2);
/// A move waits this long for a new replica to catch up before it gives up (and is retried).
const MOVE_TIMEOUT: Duration = Duration::from_secs(150);

pub(crate) async fn run(state: Arc<NodeState>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut task: Option<JoinHandle<()>> = None;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = state.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if idle_since.is_some_and(|at| at.elapsed() < IDLE_TICK) {
            continue;
        }
        idle_since = None;
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            continue;
        }
        let Ok(meta) = state.meta() else {
            continue;
        };
        if !meta::is_leader(&meta, state.id()) {
            continue;
        }
        let map = match meta::read_map(&meta) {
            Ok(Some((map, _))) => map,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "controller: reading the map");
                continue;
            }
        };
        let view = shard_list::view(&state).await;
        let step = next_step(&map, &meta, &view);
        if step.is_none() {
            idle_since = Some(tokio::time::Instant::now());
        }
        if let Some(step) = step {
            let state = state.clone();
            // Tracked, and cut short when the node stops: every step is safe to abandon and
            // is found again by the next controller (here or on the next meta leader).
            task = Some(state.tasks.clone().spawn(async move {
                let what = format!("{step:?}");
                tokio::select! {
                    done = step.run(&state, &meta) => if let Err(e) = done {
                        tracing::info!(step = %what, error = %e, "controller step not done; will retry");
                    },
                    _ = state.stop.cancelled() => {
                        tracing::info!(step = %what, "controller step abandoned: the node is stopping");
                    }
                }
            }));
        }
    }
}

#[derive(Debug)]
enum Step {
    /// Drop a voter the map does not list (a move that was cut short).
    DropVoter {
        shard: u64,
        leader: u64,
        voter: u64,
    },
    /// Drop from the map the replicas that are not voters (a move that was cut short).
    TrimMap {
        shard: u64,
        voters: BTreeSet<u64>,
    },
    Move {
        m: Move,
        leader: u64,
    },
    Transfer {
        shard: u64,
        leader: u64,
        to: u64,
    },
}

fn next_step(map: &ShardMap, meta: &Shard, view: &View) -> Option<Step> {
    let members: Vec<u64> = meta::members(meta).into_keys().collect();
    let leaders = view.leaders();
    // Everything rests on knowing each shard's leader and voters.
    for info in &map.shards {
        let Some((leader, group)) = leaders.get(&info.id) else {
            continue;
        };
        let voters: BTreeSet<u64> = group
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        let want: BTreeSet<u64> = info.replicas.iter().copied().collect();
        if let Some(voter) = voters.difference(&want).next() {
            return Some(Step::DropVoter {
                shard: info.id,
                leader: *leader,
                voter: *voter,
            });
        }
        if voters != want && !voters.is_empty() {
            return Some(Step::TrimMap {
                shard: info.id,
                voters,
            });
        }
    }
    if let Some(m) = placement::plan_move(map, &members) {
        let (leader, _) = leaders.get(&m.shard)?;
        return Some(Step::Move { m, leader: *leader });
    }
    // Leaders move only once every shard has one: an election in progress is not a reason.
    if leaders.len() < map.shards.len() || !view.unreachable.is_empty() {
        return None;
    }
    let led: BTreeMap<u64, u64> = leaders.iter().map(|(s, (n, _))| (*s, *n)).collect();
    let (shard, to) = placement::plan_leader_transfer(map, &led, &members)?;
    Some(Step::Transfer {
        shard,
        leader: led[&shard],
        to,
    })
}

impl Step {
    async fn run(self, state: &NodeState, meta: &Shard) -> Result<()> {
        match self {
            Step::DropVoter {
                shard,
                leader,
                voter,
            } => {
                tracing::info!(shard, voter, "dropping a voter the map does not list");
                change_voters(state, shard, leader, None, Some(voter)).await
            }
            Step::TrimMap { shard, voters } => {
                tracing::info!(
                    shard,
                    ?voters,
                    "dropping replicas that never joined from the map"
                );
                update_map(meta, |map| {
                    let info = map.shard_mut(shard)?;
                    info.replicas.retain(|r| voters.contains(r));
                    info.founders.clear();
                    Some(())
                })
                .await
            }
            Step::Move { m, leader } => {
                tracing::info!(shard = m.shard, add = ?m.add, remove = ?m.remove, "moving a replica");
                if let Some(add) = m.add {
                    update_map(meta, |map| {
                        let info = map.shard_mut(m.shard)?;
                        if info.has_replica(add) {
                            return None;
                        }
                        info.replicas.push(add);
                        info.founders.clear();
                        Some(())
                    })
                    .await?;
                }
                change_voters(state, m.shard, leader, m.add, m.remove).await?;
                if let Some(remove) = m.remove {
                    update_map(meta, |map| {
                        let info = map.shard_mut(m.shard)?;
                        if !info.has_replica(remove) {
                            return None;
                        }
                        info.replicas.retain(|r| *r != remove);
                        info.founders.clear();
                        Some(())
                    })
                    .await?;
                }
                tracing::info!(shard = m.shard, "replica moved");
                Ok(())
            }
            Step::Transfer { shard, leader, to } => {
                tracing::info!(shard, from = leader, to, "moving a leader");
                let addr = addr_of(state, leader)?;
                let mut admin = state.peers.admin(&addr).map_err(Error::Unavailable)?;
                let request = TransferLeaderRequest { shard, to };
                tokio::time::timeout(Duration::from_secs(15), admin.transfer_leader(request))
                    .await
                    .map_err(|_| Error::Unavailable("leader transfer timed out".into()))?
                    .map_err(|e| Error::Unavailable(e.message().to_string()))?;
                Ok(())
            }
        }
    }
}

fn addr_of(state: &NodeState, node: u64) -> Result<String> {
    state
        .nodes()
        .get(&node)
        .cloned()
        .ok_or_else(|| Error::Unavailable(format!("no address for node {node}")))
}

/// Asks the shard's leader to add `add` (caught up first) and drop `remove`.
async fn change_voters(
    state: &NodeState,
    shard: u64,
    leader: u64,
    add: Option<u64>,
    remove: Option<u64>,
) -> Result<()> {
    let request = MoveReplicaRequest {
        shard,
        add: add.unwrap_or(0),
        add_addr: match add {
            Some(n) => addr_of(state, n)?,
            None => String::new(),
        },
        remove: remove.unwrap_or(0),
    };
    let mut admin = state
        .peers
        .admin(&addr_of(state, leader)?)
        .map_err(Error::Unavailable)?;
    tokio::time::timeout(MOVE_TIMEOUT, admin.move_replica(request))
        .await
        .map_err(|_| Error::Unavailable(format!("moving a replica of shard {shard} timed out")))?
        .map_err(|e| Error::Unavailable(e.message().to_string()))?;
    Ok(())
}

/// Applies `change` to the current map and writes it at the next epoch; `change` returns
/// `None` when there is nothing to do.
async fn update_map(meta: &Shard, change: impl Fn(&mut ShardMap) -> Option<()>) -> Result<()> {
    let (map, version) =
        meta::read_map(meta)?.ok_or_else(|| Error::Unavailable("no shard map".into()))?;
    let mut next = map.next_epoch();
    if change(&mut next).is_none() {
        return Ok(());
    }
    if !meta::propose_map(meta, Some(version), &next).await? {
        return Err(Error::Unavailable(
            "the shard map changed under the controller".into(),
        ));
    }
    Ok(())
}
