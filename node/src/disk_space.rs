//! Free space on the data directory's file system, and the refusal of client writes when it
//! runs low.
//!
//! A WAL that hits ENOSPC stops for good (as after a failed fsync: a write that may be half on
//! disk is never acknowledged, and the node exits rather than limp on), so the node must not
//! get there on a full disk. It looks at the file system's free space every
//! [`CHECK_INTERVAL`]; while it is under the reserve (`limits.min-free-disk-bytes`), client
//! writes (put, delete, CAS, batch) to the shards it leads are refused with RESOURCE_EXHAUSTED and a message naming
//! the directory, the free space and the reserve, while reads, Raft traffic and admin calls go
//! on. Once space is freed the next check lets writes in again: no restart.
//!
//! The reserve is what Raft may still write while writes are refused — entries the leaders
//! already accepted, membership changes, checkpoints — and what arrives between two checks,
//! so it must be larger than a checkpoint of the node's data plus a fraction of a second of
//! writes. A follower's own disk does not stop its leader: a follower whose disk fills while its
//! leader's does not still hits ENOSPC and stops (see docs/architecture.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How often free space is read.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Free space of one directory's file system against a reserve.
pub(crate) struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
    /// Bytes available to this process at the last check (`u64::MAX` before the first).
    free: AtomicU64,
    low: AtomicBool,
}

impl DiskSpace {
    /// Watches `dir`'s file system; writes are refused while it has under `reserve` bytes free.
    pub fn new(dir: &Path, reserve: u64) -> Arc<DiskSpace> {
        let space = Arc::new(DiskSpace {
            dir: dir.to_path_buf(),
            reserve,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        });
        space.refresh();
        space
    }

    /// Reads the free space now. A file system that cannot be read is not a reason to refuse
    /// writes (the WAL reports real failures itself): the last figure stays.
    pub fn refresh(&self) {
        let free = match available_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free disk space");
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.reserve;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(
                    dir = %self.dir.display(), free, reserve = self.reserve,
                    "disk space under the reserve: refusing writes until space is freed"
                );
            } else {
                tracing::info!(dir = %self.dir.display(), free, "disk space back over the reserve: accepting writes");
            }
        }
    }

    /// Free bytes at the last check (`u64::MAX` before the first one succeeded).
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// The reserve writes are refused under.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Whether writes are refused now.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// `Ok` unless free space is under the reserve.
    pub fn check(&self) -> Result<()> {
        if !self.low.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(Error::NoSpace(format!(
            "no space for writes: {} bytes free on the disk of {}, under the node's reserve of \
             {} bytes (limits.min-free-disk-bytes); reads still work, and writes resume once \
             space is freed",
            self.free.load(Ordering::Relaxed),
            self.dir.display(),
            self.reserve
        )))
    }

    /// Re-reads the free space every [`CHECK_INTERVAL`] until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(CHECK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let space = self.clone();
            // statvfs is a blocking call, cheap but not to be made on an async worker.
            let _ = tokio::task::spawn_blocking(move || space.refresh()).await;
        }
    }
}

/// Bytes an unprivileged process may still allocate on `dir`'s file system.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_under_the_reserve_and_the_error_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 0);
        DiskSpace::new(dir.path(), 0).check().unwrap();
        let e = DiskSpace::new(dir.path(), u64::MAX).check().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no space for writes"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("min-free-disk-bytes"), "{text}");
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
    }
}
