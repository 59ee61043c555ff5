//! What the services share: the node's identity, its WAL and its registry of groups.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use islab_storage::{DataDir, GroupId, Wal};

use crate::cluster_id::ClusterId;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::shard::Shard;

/// The group that holds the data while the cluster has one shard.
pub const DATA_GROUP: GroupId = 1;

pub(crate) struct NodeState {
    pub config: Arc<NodeConfig>,
    /// `host:port` peers and clients reach this node at.
    pub advertise: String,
    pub cluster: ClusterId,
    pub wal: Wal,
    pub data_dir: DataDir,
    groups: RwLock<HashMap<GroupId, Arc<Shard>>>,
}

impl NodeState {
    pub fn new(
        config: Arc<NodeConfig>,
        advertise: String,
        cluster: ClusterId,
        wal: Wal,
        data_dir: DataDir,
    ) -> NodeState {
        NodeState {
            config,
            advertise,
            cluster,
            wal,
            data_dir,
            groups: RwLock::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn add_shard(&self, shard: Arc<Shard>) {
        self.groups.write().unwrap().insert(shard.group, shard);
    }

    pub fn shard(&self, group: GroupId) -> Result<Arc<Shard>> {
        self.groups
            .read()
            .unwrap()
            .get(&group)
            .cloned()
            .ok_or(Error::NoSuchGroup(group))
    }

    pub fn shards(&self) -> Vec<Arc<Shard>> {
        let mut shards: Vec<_> = self.groups.read().unwrap().values().cloned().collect();
        shards.sort_by_key(|s| s.group);
        shards
    }

    /// Where an incoming snapshot of `group` is received before it is installed.
    pub fn incoming_path(&self, group: GroupId) -> PathBuf {
        self.data_dir
            .root()
            .join("incoming")
            .join(format!("{group}-{:016x}.ckpt", rand::random::<u64>()))
    }
}
