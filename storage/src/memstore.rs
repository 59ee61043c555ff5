//! The memory-first store of one shard: a [`DashMap`] of versioned values.
//!
//! Reads go straight to the map and never wait for the apply loop. Apply is deterministic:
//! the version of a value is derived from the log index of the entry that wrote it and the
//! position of its request in that entry (see [`command::version`]).
//!
//! This file holds the store and its reads; applying commands is in `memstore/apply.rs`, the
//! checkpoint image taken while apply goes on in `memstore/checkpoint_scan.rs`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::memstore::checkpoint_scan::Capture;
use crate::memstore::command::RESERVED_PREFIX;

mod apply;
mod bulk_load;
mod checkpoint_scan;
pub(crate) mod command;

pub use checkpoint_scan::CheckpointScan;

/// Lock shards per store: the unit a checkpoint scan locks at a time.
const SHARDS: usize = 2048;

/// A value with the log index that wrote it and an optional expiry (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Versioned {
    pub value: Bytes,
    pub version: u64,
    pub expires_at: Option<u64>,
}

/// A key and its value, as a checkpoint holds them.
type KeyValue = (Bytes, Versioned);

/// One shard's data in memory.
pub struct MemStore {
    map: DashMap<Bytes, Versioned>,
    /// Key and value bytes held.
    bytes: AtomicI64,
    /// Keys and bytes of the store's own reserved keys (client sessions), included above.
    reserved_keys: AtomicI64,
    reserved_bytes: AtomicI64,
    /// The highest version of any value written or loaded: where a checkpoint begun now cuts
    /// (see [`MemStore::last_version`]).
    last_version: AtomicU64,
    capturing: AtomicBool,
    capture: Mutex<Option<Arc<Capture>>>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore")
            .field("keys", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

fn size_of(key: &[u8], v: &Versioned) -> i64 {
    (key.len() + v.value.len()) as i64
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::with_capacity(0)
    }

    /// A store with room for `keys` keys (a checkpoint being loaded knows how many).
    pub fn with_capacity(keys: usize) -> MemStore {
        MemStore {
            map: DashMap::with_capacity_and_shard_amount(keys, SHARDS),
            bytes: AtomicI64::new(0),
            reserved_keys: AtomicI64::new(0),
            reserved_bytes: AtomicI64::new(0),
            last_version: AtomicU64::new(0),
            capturing: AtomicBool::new(false),
            capture: Mutex::new(None),
        }
    }

    /// The current value of `key` (expired values included: callers filter by their clock).
    pub fn get(&self, key: &[u8]) -> Option<Versioned> {
        self.map.get(key).map(|v| v.clone())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Key and value bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// Keys clients wrote (the store's own session keys left out).
    pub fn user_keys(&self) -> u64 {
        (self.map.len() as i64 - self.reserved_keys.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Key and value bytes of the keys clients wrote.
    pub fn user_bytes(&self) -> u64 {
        (self.bytes.load(Ordering::Relaxed) - self.reserved_bytes.load(Ordering::Relaxed)).max(0)
            as u64
    }

    fn account(&self, key: &[u8], bytes: i64, keys: i64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if key.starts_with(RESERVED_PREFIX) {
            self.reserved_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.reserved_keys.fetch_add(keys, Ordering::Relaxed);
        }
    }

    /// The highest version any value in the store was written or loaded with.
    ///
    /// Versions grow in apply order (see [`command::version`]), so every write applied
    /// after this moment carries a higher one: this is the cut to hand
    /// [`MemStore::begin_checkpoint`] for an image of the store as applied so far. (A log
    /// index is not: a gathered entry's versions are its index × 4096 plus positions.)
    pub fn last_version(&self) -> u64 {
        self.last_version.load(Ordering::Relaxed)
    }

    /// Inserts a value as loaded from a checkpoint (no pre-image bookkeeping).
    pub fn load(&self, key: Bytes, value: Versioned) {
        self.last_version
            .fetch_max(value.version, Ordering::Relaxed);
        let added = size_of(&key, &value);
        match self.map.insert(key.clone(), value) {
            Some(old) => self.account(&key, added - size_of(&key, &old), 0),
            None => self.account(&key, added, 1),
        }
    }

    /// Up to `limit` keys in `[start, end)` (`end` `None`: unbounded) that begin with `prefix`,
    /// in key order, skipping the store's reserved keys. Returns them and whether more follow.
    ///
    /// The map is unordered, so this visits every key (keeping the `limit` smallest in a heap):
    /// O(n log limit). Fine for paging through small shards; an ordered index is future work.
    pub fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        prefix: &[u8],
        limit: usize,
    ) -> (Vec<(Bytes, Versioned)>, bool) {
        use std::collections::BinaryHeap;
        let mut heap: BinaryHeap<(Bytes, Versioned)> = BinaryHeap::new();
        let keep = limit.saturating_add(1);
        for r in self.map.iter() {
            let key = r.key();
            if key.as_ref() < start
                || end.is_some_and(|e| key.as_ref() >= e)
                || !key.starts_with(prefix)
                || key.starts_with(RESERVED_PREFIX)
            {
                continue;
            }
            if heap.len() < keep {
                heap.push((key.clone(), r.value().clone()));
            } else if heap.peek().is_some_and(|(top, _)| key < top) {
                heap.pop();
                heap.push((key.clone(), r.value().clone()));
            }
        }
        let mut items = heap.into_sorted_vec();
        let more = items.len() > limit;
        items.truncate(limit);
        (items, more)
    }

    /// Visits every (key, value), a lock shard at a time. Not a point-in-time view.
    pub fn for_each(&self, mut f: impl FnMut(&Bytes, &Versioned)) {
        for r in self.map.iter() {
            f(r.key(), r.value());
        }
    }
}

/// How many of a client's most recent write seqs are remembered for deduplication.
pub const SESSION_WINDOW: u64 = 1 << 16;

/// The latest expiry a value holds. A checkpoint stores `expires_at + 1` (0 for none), which
/// has no room for `u64::MAX` (the node's `now + ttl` saturates to it for a huge TTL; writing
/// the checkpoint overflowed). Apply clamps to this, identically on every replica, so one
/// restored from a checkpoint holds exactly what one that replayed the log holds.
pub(crate) const MAX_EXPIRES_AT: u64 = u64::MAX - 1;

#[cfg(test)]
mod tests;
