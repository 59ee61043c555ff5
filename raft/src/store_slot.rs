//! The shard's live memory store, replaceable as a whole when a snapshot is installed.
//!
//! Reads never go through the apply loop: the KV service holds a [`StoreSlot`] and reads the
//! current [`MemStore`] directly. Installing a snapshot builds a fresh store from the checkpoint
//! and swaps it in with one pointer write, so a reader sees either the old state or the new
//! one, never a half-loaded store. A reader that already took the old store finishes its read
//! on it; the old store is freed when the last such reader drops it.

use std::sync::{Arc, RwLock};

use islab_storage::MemStore;

/// A shared, swappable handle to a shard's current memory store.
#[derive(Clone)]
pub struct StoreSlot {
    current: Arc<RwLock<Arc<MemStore>>>,
}

impl StoreSlot {
    /// A slot holding `store`.
    pub fn new(store: Arc<MemStore>) -> StoreSlot {
        StoreSlot {
            current: Arc::new(RwLock::new(store)),
        }
    }

    /// The store to read (or, for the state machine, apply to) right now.
    pub fn current(&self) -> Arc<MemStore> {
        // The lock only guards a pointer copy, which cannot panic halfway: a poisoned lock
        // still holds a valid store.
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Puts `store` in place of the current one (snapshot install) and returns the old one, so
    /// the caller decides where a possibly large store is freed — not under the lock.
    pub(crate) fn replace(&self, store: Arc<MemStore>) -> Arc<MemStore> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, store)
    }
}

impl std::fmt::Debug for StoreSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSlot")
            .field("keys", &self.current().len())
            .finish()
    }
}
