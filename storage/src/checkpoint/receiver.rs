//! The follower side of a snapshot install: a checkpoint received as a stream of chunks.
//!
//! The chunks go to a temporary file next to the real name; only a file that is complete,
//! synced and verified block by block is renamed to it, so a transfer cut off halfway leaves
//! nothing a restart would load.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, corrupt, io_err, sync_parent, temp_path};
use crate::error::Result;

/// Receives a checkpoint as a stream of chunks (the follower side of a snapshot install).
pub struct CheckpointReceiver {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    received: u64,
}

impl CheckpointReceiver {
    /// Starts receiving into a temporary file next to `path`.
    pub fn create(path: &Path) -> Result<CheckpointReceiver> {
        let tmp = temp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("creating", &tmp, e))?;
        Ok(CheckpointReceiver {
            path: path.to_path_buf(),
            tmp,
            file,
            received: 0,
        })
    }

    /// Appends the chunk that starts at `offset`; chunks must arrive in order.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset != self.received {
            return Err(corrupt(
                &self.tmp,
                offset,
                format!("chunk out of order: expected offset {}", self.received),
            ));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| io_err("writing", &self.tmp, e))?;
        self.received += data.len() as u64;
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Syncs, verifies every block, and moves the file to its real name.
    pub fn finish(self) -> Result<Checkpoint> {
        self.file
            .sync_all()
            .map_err(|e| io_err("syncing", &self.tmp, e))?;
        let received = Checkpoint::open(&self.tmp)?;
        received.verify()?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_err("renaming", &self.tmp, e))?;
        sync_parent(&self.path)?;
        Checkpoint::open(&self.path)
    }
}
