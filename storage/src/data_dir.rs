//! A node's data directory: its layout and the lock that keeps a second process out.
//!
//! ```text
//! <data-dir>/LOCK          held (flock) for the life of the process
//! <data-dir>/wal/          segments of the node's one WAL
//! <data-dir>/catalog/      sled: node id, cluster id, checkpoint catalog
//! <data-dir>/checkpoints/  <group>/<checkpoint files>
//! <data-dir>/incoming/     snapshots being received from a leader, before they are installed
//! ```
//!
//! Every path under a data directory comes from here.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::GroupId;
use crate::error::{Error, Result};

/// A locked data directory. The lock is released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the layout if needed and takes the lock, failing with [`Error::Locked`] if
    /// another process holds it.
    pub fn open(root: impl AsRef<Path>) -> Result<DataDir> {
        let root = root.as_ref().to_path_buf();
        for dir in [
            root.clone(),
            root.join("wal"),
            root.join("checkpoints"),
            root.join("incoming"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { dir: root }),
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), e));
            }
        }
        Ok(DataDir { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn wal_dir(&self) -> PathBuf {
        DataDir::wal_dir_in(&self.root)
    }

    /// Where the WAL of the data directory `root` is, without opening (locking) it: for the
    /// offline tools, which read a directory a node may be using.
    pub fn wal_dir_in(root: &Path) -> PathBuf {
        root.join("wal")
    }

    pub fn catalog_dir(&self) -> PathBuf {
        self.root.join("catalog")
    }

    /// Where snapshots being received are written; a received file moves from here into its
    /// group's checkpoint directory once verified.
    pub fn incoming_dir(&self) -> PathBuf {
        self.root.join("incoming")
    }

    /// Deletes whatever a previous run left half-received in [`Self::incoming_dir`]: of no
    /// use once the process that received it is gone (the leader sends the snapshot again).
    pub fn clear_incoming(&self) -> Result<()> {
        let dir = self.incoming_dir();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
                .path();
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Where `group`'s checkpoints live (created on demand).
    pub fn checkpoint_dir(&self, group: GroupId) -> Result<PathBuf> {
        let dir = self.root.join("checkpoints").join(group.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(err.to_string().contains("locked by another process"));
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn a_half_received_snapshot_is_cleared_and_the_layout_stays() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        std::fs::write(data.incoming_dir().join("3-00ff.ckpt"), b"half").unwrap();
        data.clear_incoming().unwrap();
        assert!(data.incoming_dir().is_dir());
        assert_eq!(std::fs::read_dir(data.incoming_dir()).unwrap().count(), 0);
        assert!(data.wal_dir().is_dir());
    }
}
