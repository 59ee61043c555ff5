//! The directory of one group's checkpoints, and which of them is the current snapshot.
//!
//! A checkpoint is both the Raft snapshot of a group and what a restart loads before
//! replaying the WAL tail, so at any time exactly one finished checkpoint is *current*:
//!
//! ```text
//! <dir>/<term>-<index>-<snapshot_id>.ckpt.tmp      being written or linked in; never read
//! <dir>/<term>-<index>-<snapshot_id>.ckpt          finished: fsynced, renamed into place
//! ```
//!
//! A file gets its final name only by a rename followed by a directory fsync, so after a crash
//! a `.ckpt` file is always complete; leftover `.tmp` files are removed at open. The header,
//! not the name, says what a checkpoint holds: a snapshot received straight into this
//! directory under another `.ckpt` name is just as good. When a newer
//! checkpoint becomes current the previous one is deleted (openraft: "all other snapshots
//! should be deleted"). A build that finishes after a newer snapshot was installed from the
//! leader loses: its file is discarded and the installed snapshot stays current.
//!
//! Every method that touches the disk blocks; callers run them in `spawn_blocking`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use islab_storage::{
    Checkpoint, CheckpointMeta, CheckpointScan, GroupId, temp_path as checkpoint_temp_path,
};

use crate::encoding;
use crate::error::Error;
use crate::type_config::{Snapshot, SnapshotMeta};

const FINISHED_EXT: &str = "ckpt";
const TEMP_EXT: &str = "tmp";

/// One group's checkpoint directory and its current snapshot.
pub(crate) struct CheckpointDir {
    group: GroupId,
    dir: PathBuf,
    current: Mutex<Option<Snapshot>>,
    next_id: AtomicU64,
}

impl CheckpointDir {
    /// Opens (creating it if needed) the checkpoint directory of `group`: removes unfinished
    /// temp files, makes the newest readable checkpoint current and deletes the older ones.
    /// A checkpoint whose header does not verify is left in place and logged, never deleted.
    pub(crate) fn open(group: GroupId, dir: PathBuf) -> Result<CheckpointDir, Error> {
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create checkpoint dir {}", dir.display()), e))?;
        let mut found: Vec<Snapshot> = Vec::new();
        for path in list(&dir)? {
            match path.extension().and_then(|e| e.to_str()) {
                Some(TEMP_EXT) => {
                    tracing::info!(group, file = %path.display(), "removing unfinished checkpoint");
                    remove(&path)?;
                }
                Some(FINISHED_EXT) => match open_snapshot(group, &path) {
                    Ok(snapshot) => found.push(snapshot),
                    Err(e) => {
                        tracing::error!(group, file = %path.display(), error = %e,
                            "ignoring unreadable checkpoint")
                    }
                },
                _ => {}
            }
        }
        found.sort_by_key(|s| s.meta.last_log_id);
        let current = found.pop();
        for stale in &found {
            remove(stale.snapshot.path())?;
        }
        if !found.is_empty() {
            sync_dir(&dir)?;
        }
        if let Some(current) = &current {
            tracing::info!(group, snapshot = %current.meta, file = %current.snapshot.path().display(),
                "current checkpoint");
        }
        Ok(CheckpointDir {
            group,
            dir,
            current: Mutex::new(current),
            next_id: AtomicU64::new(0),
        })
    }

    /// The directory the checkpoints live in.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// The current snapshot, if any checkpoint was ever finished.
    pub(crate) fn current(&self) -> Option<Snapshot> {
        self.lock().clone()
    }

    /// Writes the checkpoint `scan` produces and makes it the current snapshot — unless a
    /// newer snapshot became current while it was written, in which case its file is deleted
    /// and the returned snapshot names a file that no longer exists (openraft only looks at the
    /// metadata of a build that lost).
    pub(crate) fn build(
        &self,
        meta: SnapshotMeta,
        scan: CheckpointScan,
    ) -> Result<Snapshot, Error> {
        let snapshot_id = self.new_snapshot_id();
        let header = CheckpointMeta {
            group: self.group,
            last_applied: meta.last_log_id.as_ref().map(encoding::log_pos),
            membership: encoding::encode_membership(&meta.last_membership)?,
            snapshot_id: snapshot_id.clone(),
        };
        // `Checkpoint::write` writes a temp file, fsyncs, renames and fsyncs the directory.
        let final_path = self.final_path(&header);
        let written = Checkpoint::write(&final_path, &header, scan)?;

        let mut current = self.lock();
        if let Some(cur) = current.as_ref()
            && cur.meta.last_log_id > meta.last_log_id
        {
            tracing::info!(group = self.group, built = %meta, current = %cur.meta,
                "discarding a checkpoint overtaken by a newer snapshot");
            remove(written.path())?;
            return Ok(Snapshot {
                meta,
                snapshot: written,
            });
        }
        let snapshot = Snapshot {
            meta,
            snapshot: written,
        };
        self.replace_current(&mut current, snapshot.clone())?;
        Ok(snapshot)
    }

    /// Makes `checkpoint` the current snapshot, whatever was current before.
    ///
    /// A checkpoint in this directory (our own, or one received straight into it) is used in
    /// place. One in another directory (another group's or node's) is hard-linked in, or copied
    /// if it is on another filesystem, so its owner keeps its file.
    pub(crate) fn install(
        &self,
        meta: SnapshotMeta,
        checkpoint: Checkpoint,
    ) -> Result<Snapshot, Error> {
        let local = if checkpoint.path().parent() == Some(self.dir.as_path()) {
            checkpoint
        } else {
            let final_path = self.final_path(checkpoint.meta());
            let temp = checkpoint_temp_path(&final_path);
            link_or_copy(checkpoint.path(), &temp)?;
            rename(&temp, &final_path)?;
            sync_dir(&self.dir)?;
            Checkpoint::open(&final_path)?
        };
        let snapshot = Snapshot {
            meta,
            snapshot: local,
        };
        let mut current = self.lock();
        self.replace_current(&mut current, snapshot.clone())?;
        Ok(snapshot)
    }

    fn replace_current(
        &self,
        current: &mut Option<Snapshot>,
        snapshot: Snapshot,
    ) -> Result<(), Error> {
        let old = current.replace(snapshot);
        if let Some(old) = old
            && Some(old.snapshot.path()) != current.as_ref().map(|s| s.snapshot.path())
        {
            remove(old.snapshot.path())?;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// A fresh snapshot id: unique on this node across restarts (milliseconds, then a
    /// counter).
    fn new_snapshot_id(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{millis}-{seq}")
    }

    fn final_path(&self, meta: &CheckpointMeta) -> PathBuf {
        let name = match meta.last_applied {
            Some(pos) => format!(
                "{}-{}-{}.{FINISHED_EXT}",
                pos.term, pos.index, meta.snapshot_id
            ),
            None => format!("none-{}.{FINISHED_EXT}", meta.snapshot_id),
        };
        self.dir.join(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        // Every critical section leaves `current` naming a finished file, so a panic inside
        // one cannot leave it inconsistent.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The openraft view of a checkpoint's header.
pub(crate) fn snapshot_meta(meta: &CheckpointMeta) -> Result<SnapshotMeta, Error> {
    Ok(SnapshotMeta {
        last_log_id: meta.last_applied.map(encoding::log_id),
        last_membership: encoding::decode_membership(&meta.membership)?,
    })
}

fn open_snapshot(group: GroupId, path: &Path) -> Result<Snapshot, Error> {
    let checkpoint = Checkpoint::open(path)?;
    if checkpoint.meta().group != group {
        return Err(Error::SnapshotMismatch {
            group,
            file: path.to_path_buf(),
            reason: format!("it belongs to group {}", checkpoint.meta().group),
        });
    }
    Ok(Snapshot {
        meta: snapshot_meta(checkpoint.meta())?,
        snapshot: checkpoint,
    })
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let context = || format!("list checkpoint dir {}", dir.display());
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
        paths.push(entry.map_err(|e| Error::io(context(), e))?.path());
    }
    Ok(paths)
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("remove checkpoint {}", path.display()),
            e,
        )),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    fs::rename(from, to)
        .map_err(|e| Error::io(format!("rename {} to {}", from.display(), to.display()), e))
}

/// A second name for `from` at `to`; a durable copy when a link is impossible.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), Error> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let context = || format!("copy checkpoint {} to {}", from.display(), to.display());
    fs::copy(from, to).map_err(|e| Error::io(context(), e))?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(context(), e))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync checkpoint dir {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use islab_storage::{LogPos, MemStore};

    use super::*;

    const GROUP: GroupId = 4;

    fn meta(term: u64, index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(encoding::log_id(LogPos { term, index })),
            last_membership: Default::default(),
        }
    }

    fn scan(at: u64) -> CheckpointScan {
        Arc::new(MemStore::new()).begin_checkpoint(at).unwrap()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = list(dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_newer_build_replaces_the_current_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::open(GROUP, tmp.path().join("g")).unwrap();
        assert!(dir.current().is_none());

        let first = dir.build(meta(1, 5), scan(5)).unwrap();
        assert_eq!(dir.current().unwrap().meta, meta(1, 5));
        let second = dir.build(meta(2, 9), scan(9)).unwrap();
        assert_eq!(dir.current().unwrap().meta, meta(2, 9));
        assert!(!first.snapshot.path().exists());
        assert!(second.snapshot.path().exists());
        assert_eq!(files(dir.path()).len(), 1);
    }

    #[test]
    fn open_keeps_the_newest_and_clears_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("g");
        {
            let dir = CheckpointDir::open(GROUP, path.clone()).unwrap();
            let old = dir.build(meta(1, 5), scan(5)).unwrap();
            // A crash can leave an older checkpoint and a half-written one behind.
            fs::copy(old.snapshot.path(), path.join("0-1-old.ckpt")).unwrap();
            dir.build(meta(1, 8), scan(8)).unwrap();
            fs::write(path.join("1-9-x.ckpt.tmp"), b"half a file").unwrap();
        }
        assert_eq!(files(&path).len(), 3);

        let dir = CheckpointDir::open(GROUP, path.clone()).unwrap();
        let current = dir.current().unwrap();
        assert_eq!(current.meta, meta(1, 8));
        assert_eq!(
            files(&path),
            vec![
                current
                    .snapshot
                    .path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
            ]
        );
    }

    #[test]
    fn install_links_a_foreign_file_and_a_late_build_loses() {
        let tmp = tempfile::tempdir().unwrap();
        let leader = CheckpointDir::open(GROUP, tmp.path().join("leader")).unwrap();
        let follower = CheckpointDir::open(GROUP, tmp.path().join("follower")).unwrap();
        let shipped = leader.build(meta(3, 20), scan(20)).unwrap();

        // The follower started a checkpoint of its own state before the snapshot arrived.
        let own = scan(4);
        let installed = follower
            .install(shipped.meta.clone(), shipped.snapshot.clone())
            .unwrap();
        assert!(installed.snapshot.path().starts_with(follower.path()));
        assert!(
            shipped.snapshot.path().exists(),
            "the leader keeps its file"
        );
        assert_eq!(follower.current().unwrap().meta, meta(3, 20));

        let late = follower.build(meta(2, 4), own).unwrap();
        assert_eq!(late.meta, meta(2, 4));
        assert_eq!(follower.current().unwrap().meta, meta(3, 20));
        assert_eq!(files(follower.path()).len(), 1);

        // Installing the current snapshot again (what a restart does) keeps its file.
        follower
            .install(installed.meta.clone(), installed.snapshot.clone())
            .unwrap();
        assert!(installed.snapshot.path().exists());
    }
}
