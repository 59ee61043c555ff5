//! The catalog: a node's small durable metadata, in sled.
//!
//! Node id and cluster id live here. Bulk data never does: openraft dropped its sled store
//! because of sled's memory and space behaviour. Two pieces of metadata one might expect here
//! live elsewhere on purpose: the Raft vote and committed index are records in the WAL, where
//! they are ordered with the log appends they must be serialized with (one queue, one fsync);
//! and the catalog of checkpoints is each group's checkpoint directory itself (file names plus
//! verified headers, changed only by atomic renames), so there is one source of truth that a
//! crash between two updates cannot contradict.

use std::path::Path;

use crate::error::{Error, Result};

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

impl Catalog {
    /// Opens (or creates) the catalog in `dir`.
    ///
    /// A catalog dropped a moment ago in this process may still hold sled's file lock: sled's
    /// flusher thread lets go of the database a little after the last handle is dropped. So a
    /// lock refusal is retried for up to a second. (Another process holding the directory is
    /// refused earlier, by the data directory's own lock.)
    pub fn open(dir: &Path) -> Result<Catalog> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let opened = sled::Config::new().path(dir).cache_capacity(8 << 20).open();
            match opened {
                Ok(db) => return Ok(Catalog { db }),
                // sled reports it as ErrorKind::Other with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(err(e)),
            }
        }
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
        }
        let c = Catalog::open(dir.path()).unwrap();
        assert_eq!(c.node_id().unwrap(), Some(3));
        assert_eq!(c.cluster_id().unwrap().as_deref(), Some("abc"));
        c.clear_cluster_id().unwrap();
        assert_eq!(c.cluster_id().unwrap(), None);
    }
}
