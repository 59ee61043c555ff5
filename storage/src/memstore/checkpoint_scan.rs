//! The image of a [`MemStore`] at one applied version, taken while apply goes on.
//!
//! A checkpoint is the image of the store at one applied index `at`, built while later entries
//! keep being applied. No stop-the-world copy: the map's shards are scanned one at a time, and
//! an apply that is about to overwrite or delete a value that is still part of the image
//! (version <= `at`) in a shard the scan has not reached yet first saves the old value (a
//! pre-image). The image is then:
//!
//! ```text
//!   every value the scan finds with version <= at    (untouched since `at`)
//! + every saved pre-image                            (changed after `at`, before the scan got there)
//! ```
//!
//! Exactness rests on one ordering: the scan marks a shard done while it still holds that
//! shard's read lock, and apply checks the mark while holding the shard's write lock. So a
//! value is either read by the scan (and never saved as a pre-image) or saved before the scan
//! reads the shard (and then skipped by the scan, its version being > `at`): never both,
//! never neither. Each shard is locked only while its few thousand entries are cloned (cheap:
//! `Bytes` clones are reference counts), so apply is never held up for long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::memstore::{KeyValue, MemStore, Versioned};

/// What a running scan shares with apply: its cut, the shards it has passed, the pre-images.
pub(super) struct Capture {
    pub(super) at: u64,
    pub(super) done: Box<[AtomicBool]>,
    /// Per lock shard, the values saved before the scan reached that shard. Each key is saved
    /// at most once (a second change finds a version above `at`), so no lookup is needed, and
    /// a shard's list only ever grows by its own share — no long pause to grow one big map.
    /// They are emitted after the scan (emitting each shard's list as the scan passed it
    /// measured worse: p99 apply latency during a checkpoint 12 µs against 5 µs).
    pub(super) pre_images: Box<[Mutex<Vec<KeyValue>>]>,
}

impl MemStore {
    pub(super) fn current_capture(&self) -> Option<Arc<Capture>> {
        if !self.capturing.load(Ordering::Acquire) {
            return None;
        }
        self.capture.lock().unwrap().clone()
    }

    /// Starts a checkpoint of the state as of version `at`: the image holds every value
    /// with version <= `at` and nothing written after. Call it between two applies (the state
    /// machine does, on its own task) with [`MemStore::last_version`]; apply may go on while
    /// the scan runs.
    pub fn begin_checkpoint(self: &Arc<Self>, at: u64) -> Result<CheckpointScan> {
        let mut slot = self.capture.lock().unwrap();
        if slot.is_some() {
            return Err(Error::CheckpointInProgress);
        }
        let capture = Arc::new(Capture {
            at,
            done: (0..self.map.shards().len())
                .map(|_| AtomicBool::new(false))
                .collect(),
            pre_images: (0..self.map.shards().len())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        });
        *slot = Some(capture.clone());
        self.capturing.store(true, Ordering::Release);
        Ok(CheckpointScan {
            store: self.clone(),
            capture,
        })
    }
}

/// A running checkpoint scan: the image of a [`MemStore`] at one applied index. Dropping it
/// ends the capture (pre-images are released).
pub struct CheckpointScan {
    store: Arc<MemStore>,
    capture: Arc<Capture>,
}

impl CheckpointScan {
    /// The applied index this scan is the image of.
    pub fn at(&self) -> u64 {
        self.capture.at
    }

    /// Calls `f` with chunks of the image (each key exactly once, in no particular order).
    /// Returns the number of keys visited.
    pub fn for_each_chunk(
        self,
        mut f: impl FnMut(&[(Bytes, Versioned)]) -> Result<()>,
    ) -> Result<u64> {
        let at = self.capture.at;
        let mut count = 0u64;
        let mut chunk: Vec<(Bytes, Versioned)> = Vec::new();
        for (i, shard) in self.store.map.shards().iter().enumerate() {
            {
                let guard = shard.read();
                // SAFETY: the iterator and the buckets it yields are used only while `guard`
                // (the shard's read lock) is held, so the table cannot change or be freed
                // under them — the same contract DashMap's own iterators keep.
                unsafe {
                    for bucket in guard.iter() {
                        let (key, value) = bucket.as_ref();
                        let value = value.get();
                        if value.version <= at {
                            chunk.push((key.clone(), value.clone()));
                        }
                    }
                }
                // Marked while the read lock is still held: see the module docs.
                self.capture.done[i].store(true, Ordering::Release);
            }
            if chunk.len() >= 4096 {
                count += chunk.len() as u64;
                f(&chunk)?;
                chunk.clear();
            }
        }
        count += chunk.len() as u64;
        f(&chunk)?;
        chunk.clear();
        for list in self.capture.pre_images.iter() {
            chunk.append(&mut list.lock().unwrap());
            if chunk.len() >= 4096 {
                count += chunk.len() as u64;
                f(&chunk)?;
                chunk.clear();
            }
        }
        count += chunk.len() as u64;
        f(&chunk)?;
        Ok(count)
    }
}

impl Drop for CheckpointScan {
    fn drop(&mut self) {
        let mut slot = self.store.capture.lock().unwrap();
        self.store.capturing.store(false, Ordering::Release);
        *slot = None;
    }
}
