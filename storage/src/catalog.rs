//! The catalog: a node's small durable metadata, in sled.
//!
//! Node id, cluster id and the checkpoint catalog (which checkpoint file is current for each
//! group) live here. Bulk data never does: openraft dropped its sled store because of sled's
//! memory and space behaviour, and the Raft vote and committed index live in the WAL instead,
//! where they are ordered with the log appends they must be serialized with.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{GroupId, LogPos};

/// One catalogued checkpoint of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// File name inside the group's checkpoint directory.
    pub file: String,
    pub last_applied: Option<LogPos>,
    pub snapshot_id: String,
    pub size: u64,
    pub keys: u64,
}

/// The node's metadata store.
#[derive(Clone)]
pub struct Catalog {
    db: sled::Db,
}

fn err(e: sled::Error) -> Error {
    Error::Catalog(e.to_string())
}

const NODE_ID: &[u8] = b"node_id";
const CLUSTER_ID: &[u8] = b"cluster_id";

fn checkpoint_key(group: GroupId) -> Vec<u8> {
    let mut k = b"checkpoint/".to_vec();
    k.extend_from_slice(&group.to_be_bytes());
    k
}

impl Catalog {
    /// Opens (or creates) the catalog in `dir`.
    pub fn open(dir: &Path) -> Result<Catalog> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 << 20)
            .open()
            .map_err(err)?;
        Ok(Catalog { db })
    }

    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.db.insert(key, value).map_err(err)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.db.get(key).map_err(err)? {
            None => Ok(None),
            Some(v) => Ok(Some(u64::from_be_bytes(v.as_ref().try_into().map_err(
                |_| Error::Catalog(format!("{} is not a u64", String::from_utf8_lossy(key))),
            )?))),
        }
    }

    /// This node's id, once set.
    pub fn node_id(&self) -> Result<Option<u64>> {
        self.get_u64(NODE_ID)
    }

    /// Records this node's id (durably).
    pub fn set_node_id(&self, id: u64) -> Result<()> {
        self.put(NODE_ID, id.to_be_bytes().to_vec())
    }

    /// The cluster this data directory belongs to, once set.
    pub fn cluster_id(&self) -> Result<Option<String>> {
        Ok(self
            .db
            .get(CLUSTER_ID)
            .map_err(err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the cluster id (durably).
    pub fn set_cluster_id(&self, id: &str) -> Result<()> {
        self.put(CLUSTER_ID, id.as_bytes().to_vec())
    }

    /// Forgets the cluster id (an init that failed before any member learnt it).
    pub fn clear_cluster_id(&self) -> Result<()> {
        self.db.remove(CLUSTER_ID).map_err(err)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    /// The current checkpoint of `group`.
    pub fn checkpoint(&self, group: GroupId) -> Result<Option<CheckpointEntry>> {
        match self.db.get(checkpoint_key(group)).map_err(err)? {
            None => Ok(None),
            Some(v) => crate::codec::decode(&v).map(Some),
        }
    }

    /// Makes `entry` the current checkpoint of `group` (durably).
    pub fn set_checkpoint(&self, group: GroupId, entry: &CheckpointEntry) -> Result<()> {
        self.put(&checkpoint_key(group), crate::codec::encode(entry)?)
    }

    /// Forgets `group`'s checkpoint (the shard left this node).
    pub fn remove_checkpoint(&self, group: GroupId) -> Result<()> {
        self.db.remove(checkpoint_key(group)).map_err(err)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    /// Every catalogued checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<(GroupId, CheckpointEntry)>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"checkpoint/") {
            let (k, v) = item.map_err(err)?;
            let group = u64::from_be_bytes(
                k[b"checkpoint/".len()..]
                    .try_into()
                    .map_err(|_| Error::Catalog("bad checkpoint key".into()))?,
            );
            out.push((group, crate::codec::decode(&v)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path()).unwrap();
            assert_eq!(c.node_id().unwrap(), None);
            c.set_node_id(3).unwrap();
            c.set_cluster_id("abc").unwrap();
            c.set_checkpoint(
                7,
                &CheckpointEntry {
                    file: "1-5.ckpt".into(),
                    last_applied: Some(LogPos { term: 1, index: 5 }),
                    snapshot_id: "s".into(),
                    size: 10,
                    keys: 2,
                },
            )
            .unwrap();
        }
        let c = Catalog::open(dir.path()).unwrap();
        assert_eq!(c.node_id().unwrap(), Some(3));
        assert_eq!(c.cluster_id().unwrap().as_deref(), Some("abc"));
        assert_eq!(c.checkpoint(7).unwrap().unwrap().keys, 2);
        assert_eq!(c.checkpoints().unwrap().len(), 1);
        c.remove_checkpoint(7).unwrap();
        assert_eq!(c.checkpoint(7).unwrap(), None);
    }
}
