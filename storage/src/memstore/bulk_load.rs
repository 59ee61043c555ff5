//! Filling a new store from a checkpoint, a lock shard at a time.
//!
//! Inserting through the map one key at a time locks the key's shard for that key alone: a
//! locked instruction that waits for the lock's cache line and keeps the next key's lookup
//! from starting early, so each key paid its cache misses (lock word, control bytes, bucket)
//! one after the other. That insert was about 60 % of a single-threaded checkpoint load
//! (perf, 1M keys). A [`BulkLoad`] queues the decoded keys instead and, every [`FLUSH_AT`]
//! keys, locks each lock shard once for all of its share:
//!
//! ```text
//!   push(key) ─ hash once, count bytes ─▶ queued: [k0 k1 k2 k3 ...]   (in arrival order)
//!                                         by_shard[s]: [positions]   (4 bytes per key)
//!   flush ─ for each shard s: write lock once; insert queued[p] for p in by_shard[s]
//! ```
//!
//! Only a 4-byte position goes to the key's shard list: queuing the whole entry there
//! (96 bytes into one of 2048 lists) missed the cache on nearly every key, and cost more
//! than it saved.
//!
//! Several `BulkLoad`s (one per loading thread) may fill one store at once: the map's shard
//! locks keep them apart. The byte counters are added to once per flush, not per key, so
//! the threads do not take turns on their cache line either.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use dashmap::SharedValue;

use super::{MemStore, Versioned, size_of};
use crate::memstore::command::RESERVED_PREFIX;

/// Keys queued before the shards are locked and filled: 128 per lock shard, 25 MB of queue.
/// 2^16 measured 5–10 % more CPU per key on a 10M-key load, 2^20 no less than this.
const FLUSH_AT: usize = 1 << 18;

struct Pending {
    hash: u64,
    key: Bytes,
    value: Versioned,
}

/// One loading thread's inserts into a store that nothing else reads or writes yet (see the
/// module docs). Keys become visible as their batch is flushed, at the latest by
/// [`finish`](BulkLoad::finish).
///
/// A key already in the store is not overwritten: it is kept for
/// [`duplicate`](BulkLoad::duplicate) and every later push is ignored. A checkpoint holds each
/// key once; with several threads, which of two copies would win depends on their timing, so
/// the caller loads such a file again in file order.
pub(crate) struct BulkLoad<'a> {
    store: &'a MemStore,
    /// The keys waiting to be inserted, in arrival order (the flush takes them out).
    queued: Vec<Option<Pending>>,
    /// Per lock shard, the positions of its keys in `queued`.
    by_shard: Vec<Vec<u32>>,
    /// What the queued keys add to the store's counters.
    bytes: i64,
    reserved_bytes: i64,
    reserved_keys: i64,
    /// The highest version pushed.
    last_version: u64,
    duplicate: Option<Bytes>,
}

impl MemStore {
    /// A loader of keys into this store (see [`BulkLoad`]).
    pub(crate) fn bulk_load(&self) -> BulkLoad<'_> {
        BulkLoad {
            store: self,
            queued: Vec::new(),
            by_shard: (0..self.map.shards().len()).map(|_| Vec::new()).collect(),
            bytes: 0,
            reserved_bytes: 0,
            reserved_keys: 0,
            last_version: 0,
            duplicate: None,
        }
    }
}

impl BulkLoad<'_> {
    /// Queues `key`, and inserts the queue once it is [`FLUSH_AT`] long.
    pub(crate) fn push(&mut self, key: Bytes, value: Versioned) {
        if self.duplicate.is_some() {
            return;
        }
        // Counted now, while the key is in the cache; by the flush it no longer is.
        let size = size_of(&key, &value);
        self.bytes += size;
        self.last_version = self.last_version.max(value.version);
        if key.starts_with(RESERVED_PREFIX) {
            self.reserved_bytes += size;
            self.reserved_keys += 1;
        }
        let hash = self.store.map.hash_usize(&key);
        let shard = self.store.map.determine_shard(hash);
        self.by_shard[shard].push(self.queued.len() as u32);
        self.queued.push(Some(Pending {
            hash: hash as u64,
            key,
            value,
        }));
        if self.queued.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// The first key that was in the store already, if any.
    pub(crate) fn duplicate(&self) -> Option<&Bytes> {
        self.duplicate.as_ref()
    }

    /// Inserts everything queued, locking each lock shard once.
    fn flush(&mut self) {
        let map = &self.store.map;
        // The same hash the map's own inserts and lookups use (DashMap's raw-api contract).
        let rehash = |(key, _): &(Bytes, SharedValue<Versioned>)| map.hash_usize(key) as u64;
        for (shard, positions) in self.by_shard.iter_mut().enumerate() {
            if positions.is_empty() || self.duplicate.is_some() {
                positions.clear();
                continue;
            }
            let mut table = map.shards()[shard].write();
            for i in positions.drain(..) {
                let Some(p) = self.queued[i as usize].take() else {
                    continue;
                };
                if table.find(p.hash, |(k, _)| *k == p.key).is_some() {
                    self.duplicate = Some(p.key);
                    break;
                }
                table.insert(p.hash, (p.key, SharedValue::new(p.value)), rehash);
            }
        }
        self.queued.clear();
        let store = self.store;
        let (bytes, reserved_bytes, reserved_keys) = (
            std::mem::take(&mut self.bytes),
            std::mem::take(&mut self.reserved_bytes),
            std::mem::take(&mut self.reserved_keys),
        );
        store.bytes.fetch_add(bytes, Ordering::Relaxed);
        store
            .reserved_bytes
            .fetch_add(reserved_bytes, Ordering::Relaxed);
        store
            .reserved_keys
            .fetch_add(reserved_keys, Ordering::Relaxed);
        store
            .last_version
            .fetch_max(self.last_version, Ordering::Relaxed);
    }

    /// Inserts what is still queued; returns the first key found twice, if any.
    pub(crate) fn finish(mut self) -> Option<Bytes> {
        self.flush();
        self.duplicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: &str, version: u64) -> Versioned {
        Versioned {
            value: Bytes::copy_from_slice(value.as_bytes()),
            version,
            expires_at: None,
        }
    }

    #[test]
    fn a_bulk_load_equals_loading_key_by_key() {
        let (bulk_store, one_by_one) = (MemStore::new(), MemStore::new());
        let mut bulk = bulk_store.bulk_load();
        // More than one flush, and a reserved key (counted apart from user keys).
        let n = FLUSH_AT as u64 + 1000;
        for i in 0..n {
            let key = Bytes::from(format!("key-{i}"));
            bulk.push(key.clone(), v("value", i));
            one_by_one.load(key, v("value", i));
        }
        let reserved = Bytes::from([RESERVED_PREFIX, b"session/x"].concat());
        bulk.push(reserved.clone(), v("s", 1));
        one_by_one.load(reserved, v("s", 1));
        assert!(bulk.finish().is_none());
        assert_eq!(bulk_store.len(), one_by_one.len());
        assert_eq!(bulk_store.bytes(), one_by_one.bytes());
        assert_eq!(bulk_store.user_keys(), n);
        assert_eq!(bulk_store.user_bytes(), one_by_one.user_bytes());
        for i in (0..n).step_by(997) {
            let key = format!("key-{i}");
            assert_eq!(
                bulk_store.get(key.as_bytes()),
                one_by_one.get(key.as_bytes())
            );
        }
    }

    #[test]
    fn a_key_already_there_is_reported_not_overwritten() {
        let store = MemStore::new();
        let mut first = store.bulk_load();
        first.push(Bytes::from_static(b"k"), v("first", 1));
        assert!(first.finish().is_none());
        let mut second = store.bulk_load();
        second.push(Bytes::from_static(b"other"), v("x", 2));
        second.push(Bytes::from_static(b"k"), v("second", 3));
        assert_eq!(second.finish().as_deref(), Some(&b"k"[..]));
        assert_eq!(store.get(b"k").unwrap().value, "first");
    }
}
