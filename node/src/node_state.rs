//! What the services share: the node's identity, its WAL, its registry of groups and its copy
//! of the shard map.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use islab_proto::raft::v1::PingRequest;
use islab_raft::{Group, GroupConfig, GroupHost, LogStore, NetworkFactory, Peers, StateMachine};
use islab_shardmap::ShardMap;
use islab_storage::{DataDir, GroupId, MemStore, Wal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster_id::ClusterId;
use crate::config::NodeConfig;
use crate::disk_space::DiskSpace;
use crate::error::{Error, Result};
use crate::liveness::Liveness;
use crate::observe::grpc::GrpcStats;
use crate::shard::Shard;

/// The meta group: it replicates the node list (its membership) and the shard map. Every node
/// is a member; data shards are groups 1 and up.
pub const META_GROUP: GroupId = 0;

pub(crate) struct NodeState {
    pub config: Arc<NodeConfig>,
    /// `host:port` peers and clients reach this node at.
    pub advertise: String,
    pub cluster: ClusterId,
    pub wal: Wal,
    pub data_dir: DataDir,
    pub peers: Peers,
    /// Free space on the data disk; client writes wait while it is under the reserve.
    pub disk: Arc<DiskSpace>,
    /// Cancelled when the node stops (asked to, or because a group failed for good).
    pub stop: CancellationToken,
    /// Why a group stopped for good, if one did.
    pub fatal: Mutex<Option<String>>,
    /// New leaders this node saw, over all its groups (each group's own count is
    /// [`Shard::leader_changes`]).
    pub leader_changes: AtomicU64,
    /// Every gRPC call served, by method and code (`observe::grpc`), when the node serves
    /// `/metrics` (`metrics-listen`); `None` otherwise, and calls are not counted.
    pub grpc: Option<Arc<GrpcStats>>,
    groups: RwLock<HashMap<GroupId, Arc<Shard>>>,
    /// This node's copy of the shard map, from the meta group; `None` before init.
    map: RwLock<Option<Arc<ShardMap>>>,
    /// Node id → address, from the meta group's membership.
    nodes: RwLock<Arc<BTreeMap<u64, String>>>,
    /// Which peers pinged lately, and which of their groups are quiescent.
    pub liveness: Liveness,
    /// The node's background loops and what they start: awaited on shutdown before any group
    /// stops, so none starts a group or writes to one behind the shutdown's back.
    pub tasks: TaskTracker,
    /// Each group's read and write drivers: they end once their group's Raft stops, and are
    /// awaited before the WAL closes.
    pub drivers: TaskTracker,
}

impl NodeState {
    pub fn new(
        config: Arc<NodeConfig>,
        advertise: String,
        cluster: ClusterId,
        wal: Wal,
        data_dir: DataDir,
    ) -> NodeState {
        let peers = Peers::new(
            config.limits.max_message_bytes(),
            config.peer_address_map.clone(),
        );
        let disk = DiskSpace::new(data_dir.root(), config.limits.min_free_disk_bytes);
        let grpc = config.metrics_listen.map(|_| Arc::default());
        NodeState {
            disk,
            config,
            advertise,
            cluster,
            wal,
            data_dir,
            peers,
            stop: CancellationToken::new(),
            fatal: Mutex::new(None),
            leader_changes: AtomicU64::new(0),
            grpc,
            groups: RwLock::default(),
            map: RwLock::default(),
            nodes: RwLock::default(),
            liveness: Liveness::default(),
            tasks: TaskTracker::new(),
            drivers: TaskTracker::new(),
        }
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn shard(&self, group: GroupId) -> Result<Arc<Shard>> {
        self.groups
            .read()
            .unwrap()
            .get(&group)
            .cloned()
            .ok_or(Error::NoSuchGroup(group))
    }

    pub fn meta(&self) -> Result<Arc<Shard>> {
        self.shard(META_GROUP)
    }

    pub fn shards(&self) -> Vec<Arc<Shard>> {
        let mut shards: Vec<_> = self.groups.read().unwrap().values().cloned().collect();
        shards.sort_by_key(|s| s.group);
        shards
    }

    /// The shard map as this node knows it.
    pub fn map(&self) -> Option<Arc<ShardMap>> {
        self.map.read().unwrap().clone()
    }

    /// Installs `map` if it is newer than the one held.
    pub fn set_map(&self, map: ShardMap) -> bool {
        let mut held = self.map.write().unwrap();
        if held.as_ref().is_some_and(|h| h.epoch >= map.epoch) {
            return false;
        }
        tracing::info!(epoch = map.epoch, "shard map installed");
        *held = Some(Arc::new(map));
        true
    }

    /// Node id → address of every member.
    pub fn nodes(&self) -> Arc<BTreeMap<u64, String>> {
        self.nodes.read().unwrap().clone()
    }

    pub fn set_nodes(&self, nodes: BTreeMap<u64, String>) {
        let mut held = self.nodes.write().unwrap();
        if **held != nodes {
            *held = Arc::new(nodes);
        }
    }

    /// Where an incoming snapshot of `group` is received before it is installed.
    /// (The transport asks through [`GroupHost`].)
    pub fn incoming_path(&self, group: GroupId) -> PathBuf {
        self.data_dir
            .incoming_dir()
            .join(format!("{group}-{:016x}.ckpt", rand::random::<u64>()))
    }

    /// Starts `group`'s Raft on this node (its log from the WAL, its state from its latest
    /// checkpoint) unless it is running already.
    pub async fn start_group(self: &Arc<Self>, group: GroupId) -> Result<Arc<Shard>> {
        if let Ok(shard) = self.shard(group) {
            return Ok(shard);
        }
        let config = &self.config;
        let log_store = LogStore::new(group, self.wal.clone());
        let checkpoint_dir = self.data_dir.checkpoint_dir(group)?;
        let state_machine = StateMachine::new(group, Arc::new(MemStore::new()), checkpoint_dir)?;
        let store = state_machine.store();
        let timing = GroupConfig {
            node: config.id,
            heartbeat_ms: config.raft.heartbeat_ms,
            election_timeout_min_ms: config.raft.election_timeout_min_ms,
            election_timeout_max_ms: config.raft.election_timeout_max_ms,
            snapshot_after_entries: config.raft.snapshot_after_entries,
            keep_entries_after_snapshot: config.raft.keep_entries_after_snapshot,
        };
        let cluster = self.cluster.clone();
        let network = NetworkFactory {
            group,
            from: config.id,
            peers: self.peers.clone(),
            cluster: Arc::new(move || cluster.get()),
            rpc_timeout: Duration::from_millis(config.raft.election_timeout_min_ms),
        };
        let raft = Group::start(group, &timing, network, log_store, state_machine).await?;
        let shard = Arc::new(Shard::new(
            group,
            raft,
            store,
            config.gather.limits(),
            self.drivers.clone(),
        ));
        // Two starters racing: keep the first, shut the second down.
        let (kept, lost) = {
            let mut groups = self.groups.write().unwrap();
            match groups.get(&group) {
                Some(existing) => (existing.clone(), Some(shard)),
                None => {
                    groups.insert(group, shard.clone());
                    (shard, None)
                }
            }
        };
        if let Some(lost) = lost {
            let _ = lost.raft.shutdown().await;
        } else {
            self.tasks.spawn(watch_group(self.clone(), kept.clone()));
            tracing::info!(group, "group started");
        }
        Ok(kept)
    }

    /// Stops `group` on this node (it no longer holds a replica). Its log stays in the WAL
    /// and its checkpoints on disk.
    pub async fn stop_group(&self, group: GroupId) {
        let shard = self.groups.write().unwrap().remove(&group);
        if let Some(shard) = shard {
            shard.stopping.cancel();
            if let Err(e) = shard.raft.shutdown().await {
                tracing::warn!(group, error = %e, "raft shutdown");
            }
            tracing::info!(group, "group stopped: no replica here any more");
        }
    }
}

/// Follows one group's state as it changes: counts the leaders it sees come, and stops the node
/// if the group's Raft stopped for good.
///
/// A group whose Raft stopped for good (its storage failed: the WAL refuses everything after a
/// failed fsync) cannot serve again in this process. Rather than linger as a node that answers
/// health checks but nothing else, the node stops serving, so `islab server` exits non-zero and
/// a supervisor restarts it — recovery then starts from what is on disk.
async fn watch_group(state: Arc<NodeState>, shard: Arc<Shard>) {
    let mut metrics = shard.raft.watch();
    let mut leader = None;
    loop {
        let m = metrics.get();
        // etcd's `leader_changes_seen` counts the first leader too: so does this.
        if m.leader != leader {
            leader = m.leader;
            if leader.is_some() {
                shard.leader_changes.fetch_add(1, Ordering::Relaxed);
                state.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(reason) = m.failure {
            if state.stop.is_cancelled() || shard.stopping.is_cancelled() {
                return; // an orderly shutdown also ends the group
            }
            let reason = format!("group {} stopped: {reason}", shard.group);
            tracing::error!(%reason, "stopping the node");
            *state.fatal.lock().unwrap() = Some(reason);
            state.stop.cancel();
            return;
        }
        tokio::select! {
            changed = metrics.changed() => if !changed { return },
            _ = state.stop.cancelled() => return,
            _ = shard.stopping.cancelled() => return,
        }
    }
}

/// What the Raft transport's server side asks of this node.
impl GroupHost for NodeState {
    async fn accept(&self, cluster_id: &str) -> std::result::Result<(), String> {
        self.cluster
            .accept(cluster_id)
            .await
            .map_err(|e| e.to_string())
    }

    fn group(&self, id: GroupId) -> std::result::Result<Group, String> {
        self.shard(id)
            .map(|s| s.raft.clone())
            .map_err(|e| e.to_string())
    }

    fn incoming_path(&self, group: GroupId) -> PathBuf {
        NodeState::incoming_path(self, group)
    }

    fn ping(&self, ping: PingRequest) {
        self.liveness.heard(
            ping.from,
            ping.quiesced.into_iter().collect(),
            ping.leading.into_iter().collect(),
        );
    }
}
