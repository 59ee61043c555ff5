//! The memory-first store of one shard: a [`DashMap`] of versioned values.
//!
//! Reads go straight to the map and never wait for the apply loop. Apply is deterministic:
//! the version of a value is derived from the log index of the entry that wrote it and the
//! position of its request in that entry (see [`crate::command::version`]).
//!
//! # Checkpoints while apply goes on
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::{Deserialize, Serialize};

use crate::command::{Command, MAX_GATHERED, RESERVED_PREFIX, Request, Response, version};
use crate::error::{Error, Result};

mod bulk_load;

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

struct Capture {
    at: u64,
    done: Box<[AtomicBool]>,
    /// Per lock shard, the values saved before the scan reached that shard. Each key is saved
    /// at most once (a second change finds a version above `at`), so no lookup is needed, and
    /// a shard's list only ever grows by its own share — no long pause to grow one big map.
    /// They are emitted after the scan (emitting each shard's list as the scan passed it
    /// measured worse: p99 apply latency during a checkpoint 12 µs against 5 µs).
    pre_images: Box<[Mutex<Vec<KeyValue>>]>,
}

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
    /// Versions grow in apply order (see [`crate::command::version`]), so every write applied
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

    /// Applies log entry `index`, whose payload is `request`: each request of a gathered entry
    /// at its own version, a plain (pre-gathering) request at version `index`.
    pub fn apply_entry(&self, index: u64, request: &Request) -> Response {
        match (&request.command, request.id) {
            (Command::Gathered(requests), None) => Response::Gathered(
                requests
                    .iter()
                    .enumerate()
                    .map(|(position, r)| {
                        if position >= MAX_GATHERED {
                            return Response::Rejected {
                                reason: format!(
                                    "a gathered entry holds at most {MAX_GATHERED} requests"
                                ),
                            };
                        }
                        self.apply_request(version(index, position), r)
                    })
                    .collect(),
            ),
            (Command::Gathered(_), Some(_)) => Response::Rejected {
                reason: "a gathered entry carries no write id of its own".into(),
            },
            _ => self.apply_request(index, request),
        }
    }

    /// Applies `request` at `version`, at most once per [`crate::WriteId`].
    ///
    /// The answer to each `(client, seq)` is kept in the store itself (under
    /// [`RESERVED_PREFIX`]), so sessions travel in checkpoints and every replica answers a retry
    /// the same way. One client's writes may arrive in any order (it pipelines them), so each
    /// seq is remembered on its own, for the last [`SESSION_WINDOW`] seqs of that client: a
    /// write older than that window cannot be told apart from one already applied and is
    /// refused rather than risk applying it twice.
    pub fn apply_request(&self, index: u64, request: &Request) -> Response {
        if let Command::Gathered(_) = request.command {
            return Response::Rejected {
                reason: "gathered requests cannot nest".into(),
            };
        }
        let Some(id) = request.id else {
            return self.apply(index, &request.command);
        };
        let seen = session_key(id.client, Some(id.seq));
        if let Some(v) = self.map.get(&seen[..])
            && let Ok(response) = crate::codec::decode::<Response>(&v.value)
        {
            return response; // a retry: the first answer, applied once
        }
        let high_key = session_key(id.client, None);
        let high = self
            .map
            .get(&high_key[..])
            .and_then(|v| v.value.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        if high >= SESSION_WINDOW && id.seq <= high - SESSION_WINDOW {
            return Response::Rejected {
                reason: format!(
                    "write {} of client {:x} is older than the last {SESSION_WINDOW} writes of that client (latest {high}): whether an earlier attempt of it was applied is no longer known, so it is not applied again",
                    id.seq, id.client
                ),
            };
        }
        let response = self.apply(index, &request.command);
        let capture = self.current_capture();
        let capture = capture.as_deref();
        let record = |key: Bytes, value: Vec<u8>| {
            let v = Versioned {
                value: Bytes::from(value),
                version: index,
                expires_at: None,
            };
            let _ = self.write(&key, Some(v), None, capture);
        };
        if let Ok(encoded) = crate::codec::encode(&response) {
            record(seen, encoded);
        }
        if id.seq > high {
            record(high_key, id.seq.to_be_bytes().to_vec());
        }
        if id.seq >= SESSION_WINDOW {
            let old = session_key(id.client, Some(id.seq - SESSION_WINDOW));
            let _ = self.write(&old, None, None, capture);
        }
        response
    }

    /// Applies `cmd` at version `index` (a log index, or a gathered request's version).
    pub fn apply(&self, index: u64, cmd: &Command) -> Response {
        let capture = self.current_capture();
        let capture = capture.as_deref();
        match cmd {
            Command::Batch(cmds) => {
                if let Err(reason) = self.check_batch(index, cmds) {
                    return Response::Rejected { reason };
                }
                Response::Batch(
                    cmds.iter()
                        .map(|c| self.apply_one(index, c, capture))
                        .collect(),
                )
            }
            cmd => self.apply_one(index, cmd, capture),
        }
    }

    /// A batch is all or nothing: no nesting, and every compare-and-swap in it must hold
    /// (evaluated in order, seeing the batch's earlier writes, whose version is the batch's
    /// log `index`) or nothing is applied.
    fn check_batch(&self, index: u64, cmds: &[Command]) -> Result<(), String> {
        let mut overlay: HashMap<&[u8], Option<u64>> = HashMap::new();
        for (i, cmd) in cmds.iter().enumerate() {
            match cmd {
                Command::Batch(_) => return Err(format!("op {i}: a batch cannot nest a batch")),
                Command::Gathered(_) => {
                    return Err(format!("op {i}: a batch cannot nest gathered requests"));
                }
                Command::Put { key, .. } => {
                    overlay.insert(key, Some(index));
                }
                Command::Delete { key } => {
                    overlay.insert(key, None);
                }
                Command::Cas { key, expected, .. } => {
                    let current = match overlay.get(&key[..]) {
                        Some(v) => *v,
                        None => self.map.get(&key[..]).map(|v| v.version),
                    };
                    if current != *expected {
                        return Err(format!(
                            "op {i}: compare-and-swap failed: expected version {expected:?}, found {current:?}"
                        ));
                    }
                    overlay.insert(key, Some(index));
                }
            }
        }
        Ok(())
    }

    fn apply_one(&self, index: u64, cmd: &Command, capture: Option<&Capture>) -> Response {
        match cmd {
            Command::Put {
                key,
                value,
                expires_at,
            } => {
                let value = Versioned {
                    value: value.clone(),
                    version: index,
                    expires_at: expires_at.map(|e| e.min(MAX_EXPIRES_AT)),
                };
                let _ = self.write(key, Some(value), None, capture);
                Response::Put { version: index }
            }
            Command::Delete { key } => {
                let (existed, _) = self.write(key, None, None, capture);
                Response::Delete { existed }
            }
            Command::Cas {
                key,
                expected,
                value,
                expires_at,
            } => {
                let value = Versioned {
                    value: value.clone(),
                    version: index,
                    expires_at: expires_at.map(|e| e.min(MAX_EXPIRES_AT)),
                };
                let (_, swapped) = self.write(key, Some(value), Some(*expected), capture);
                match swapped {
                    Ok(()) => Response::Cas {
                        succeeded: true,
                        current: Some(index),
                    },
                    Err(current) => Response::Cas {
                        succeeded: false,
                        current,
                    },
                }
            }
            Command::Batch(_) => Response::Rejected {
                reason: "a batch cannot nest a batch".into(),
            },
            Command::Gathered(_) => Response::Rejected {
                reason: "gathered requests cannot nest".into(),
            },
        }
    }

    /// Sets (`Some`) or removes (`None`) `key`, if its version is `expect` (when given).
    /// Returns whether the key existed, and `Err(current version)` if the expectation failed.
    fn write(
        &self,
        key: &Bytes,
        new: Option<Versioned>,
        expect: Option<Option<u64>>,
        capture: Option<&Capture>,
    ) -> (bool, Result<(), Option<u64>>) {
        let entry = self.map.entry(key.clone()); // holds the shard's write lock
        let old = match &entry {
            Entry::Occupied(o) => Some(o.get()),
            Entry::Vacant(_) => None,
        };
        let existed = old.is_some();
        if let Some(expect) = expect {
            let current = old.map(|v| v.version);
            if current != expect {
                return (existed, Err(current));
            }
        }
        if let (Some(capture), Some(old)) = (capture, old)
            && old.version <= capture.at
        {
            let shard = self.map.determine_map(&key[..]);
            if !capture.done[shard].load(Ordering::Acquire) {
                capture.pre_images[shard]
                    .lock()
                    .unwrap()
                    .push((key.clone(), old.clone()));
            }
        }
        if let Some(v) = &new {
            self.last_version.fetch_max(v.version, Ordering::Relaxed);
        }
        let (bytes, keys) = match (entry, new) {
            (Entry::Occupied(mut o), Some(v)) => {
                let d = size_of(key, &v) - size_of(key, o.get());
                o.insert(v);
                (d, 0)
            }
            (Entry::Occupied(o), None) => {
                let (k, v) = o.remove_entry();
                (-size_of(&k, &v), -1)
            }
            (Entry::Vacant(e), Some(v)) => {
                let d = size_of(key, &v);
                e.insert(v);
                (d, 1)
            }
            (Entry::Vacant(_), None) => (0, 0),
        };
        self.account(key, bytes, keys);
        (existed, Ok(()))
    }

    fn current_capture(&self) -> Option<Arc<Capture>> {
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

/// `<reserved>session/<client>/<seq>` holds the answer to one write; without a seq, the
/// client's highest seq seen.
fn session_key(client: u64, seq: Option<u64>) -> Bytes {
    let mut key = Vec::with_capacity(RESERVED_PREFIX.len() + 26);
    key.extend_from_slice(RESERVED_PREFIX);
    key.extend_from_slice(b"session/");
    key.extend_from_slice(&client.to_be_bytes());
    match seq {
        Some(seq) => {
            key.push(b'/');
            key.extend_from_slice(&seq.to_be_bytes());
        }
        None => key.extend_from_slice(b"/high"),
    }
    Bytes::from(key)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WriteId;

    fn put(k: &str, v: &str) -> Command {
        Command::Put {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            expires_at: None,
        }
    }

    fn del(k: &str) -> Command {
        Command::Delete {
            key: Bytes::copy_from_slice(k.as_bytes()),
        }
    }

    fn cas(k: &str, expected: Option<u64>, v: &str) -> Command {
        Command::Cas {
            key: Bytes::copy_from_slice(k.as_bytes()),
            expected,
            value: Bytes::copy_from_slice(v.as_bytes()),
            expires_at: None,
        }
    }

    #[test]
    fn put_delete_cas_versions() {
        let s = MemStore::new();
        assert_eq!(s.apply(1, &put("a", "1")), Response::Put { version: 1 });
        assert_eq!(s.get(b"a").unwrap().version, 1);
        assert_eq!(
            s.apply(2, &cas("a", Some(7), "x")),
            Response::Cas {
                succeeded: false,
                current: Some(1)
            }
        );
        assert_eq!(
            s.apply(3, &cas("a", Some(1), "2")),
            Response::Cas {
                succeeded: true,
                current: Some(3)
            }
        );
        assert_eq!(
            s.apply(4, &cas("b", None, "new")),
            Response::Cas {
                succeeded: true,
                current: Some(4)
            }
        );
        assert_eq!(s.apply(5, &del("a")), Response::Delete { existed: true });
        assert_eq!(s.apply(6, &del("a")), Response::Delete { existed: false });
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), 4);
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let s = MemStore::new();
        s.apply(1, &put("a", "1"));
        let bad = Command::Batch(vec![put("b", "1"), cas("a", Some(9), "x")]);
        assert!(matches!(s.apply(2, &bad), Response::Rejected { .. }));
        assert!(s.get(b"b").is_none());
        let good = Command::Batch(vec![put("b", "1"), cas("a", Some(1), "2"), del("c")]);
        assert_eq!(
            s.apply(3, &good),
            Response::Batch(vec![
                Response::Put { version: 3 },
                Response::Cas {
                    succeeded: true,
                    current: Some(3)
                },
                Response::Delete { existed: false },
            ])
        );
        // A CAS on a key the batch wrote sees the version that write gets (the batch's index),
        // so check and apply agree: no half-applied batch.
        let sneaky = Command::Batch(vec![put("k2", "a"), cas("k2", Some(u64::MAX), "b")]);
        assert!(matches!(s.apply(4, &sneaky), Response::Rejected { .. }));
        assert!(
            s.get(b"k2").is_none(),
            "nothing of a rejected batch is applied"
        );
        let chained = Command::Batch(vec![put("k2", "a"), cas("k2", Some(5), "b")]);
        assert!(matches!(s.apply(5, &chained), Response::Batch(_)));
        assert_eq!(s.get(b"k2").unwrap().value, "b");
        let nested = Command::Batch(vec![Command::Batch(vec![])]);
        assert!(matches!(s.apply(6, &nested), Response::Rejected { .. }));
    }

    #[test]
    fn scan_pages_in_key_order() {
        let s = MemStore::new();
        for (i, k) in ["b", "a", "d", "c", "e", "ab", "x"].iter().enumerate() {
            s.apply(i as u64 + 1, &put(k, "v"));
        }
        s.apply_request(
            9,
            &Request {
                id: Some(WriteId { client: 1, seq: 1 }),
                command: put("z", "v"),
            },
        );
        let keys = |items: Vec<(Bytes, Versioned)>| -> Vec<String> {
            items
                .into_iter()
                .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
                .collect()
        };
        let (items, more) = s.scan(b"", None, b"", 3);
        assert_eq!(
            (keys(items), more),
            (vec!["a".into(), "ab".into(), "b".into()], true)
        );
        let (items, more) = s.scan(b"b\0", Some(b"e"), b"", 10);
        assert_eq!((keys(items), more), (vec!["c".into(), "d".into()], false));
        let (items, _) = s.scan(b"", None, b"a", 10);
        assert_eq!(keys(items), vec!["a".to_string(), "ab".into()]);
        let (items, _) = s.scan(b"", None, b"", 100);
        assert_eq!(items.len(), 8, "session keys are not user keys");
    }

    #[test]
    fn a_gathered_entry_applies_each_request_on_its_own_at_its_own_version() {
        use crate::command::version;
        let s = MemStore::new();
        let id = |seq| Some(WriteId { client: 7, seq });
        let entry = |requests: Vec<Request>| Request::new(Command::Gathered(requests));
        // Before gathering, a plain entry's version was its log index: still so.
        assert_eq!(
            s.apply_entry(1, &Request::new(put("old", "x"))),
            Response::Put { version: 1 }
        );
        let got = s.apply_entry(
            2,
            &entry(vec![
                Request {
                    id: id(1),
                    command: put("k", "a"),
                },
                // The same key again in the same entry: a later, larger version.
                Request {
                    id: id(2),
                    command: put("k", "b"),
                },
                // A CAS sees the earlier requests of its entry.
                Request {
                    id: id(3),
                    command: cas("k", Some(version(2, 1)), "c"),
                },
                // A failing CAS fails alone.
                Request::new(cas("k", Some(1), "nope")),
                // An atomic batch stays atomic: its failing CAS rejects all of it, only it.
                Request::new(Command::Batch(vec![put("j", "1"), cas("k", None, "2")])),
                // A retry of the first request, gathered with it: the first answer, once.
                Request {
                    id: id(1),
                    command: put("k", "a"),
                },
                Request::new(del("old")),
                // Nesting is refused, alone.
                entry(vec![Request::new(put("n", "1"))]),
            ]),
        );
        let Response::Gathered(answers) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            answers[0],
            Response::Put {
                version: version(2, 0)
            }
        );
        assert_eq!(
            answers[1],
            Response::Put {
                version: version(2, 1)
            }
        );
        assert_eq!(
            answers[2],
            Response::Cas {
                succeeded: true,
                current: Some(version(2, 2))
            }
        );
        assert_eq!(
            answers[3],
            Response::Cas {
                succeeded: false,
                current: Some(version(2, 2))
            }
        );
        assert!(
            matches!(answers[4], Response::Rejected { .. }),
            "{:?}",
            answers[4]
        );
        assert_eq!(
            answers[5],
            Response::Put {
                version: version(2, 0)
            },
            "a retry"
        );
        assert_eq!(answers[6], Response::Delete { existed: true });
        assert!(
            matches!(answers[7], Response::Rejected { .. }),
            "{:?}",
            answers[7]
        );
        assert_eq!(answers.len(), 8);
        let k = s.get(b"k").unwrap();
        assert_eq!((&k.value[..], k.version), (&b"c"[..], version(2, 2)));
        assert!(s.get(b"j").is_none() && s.get(b"n").is_none() && s.get(b"old").is_none());
        // Versions keep growing across entries, from plain ones to gathered ones.
        assert!(version(2, 0) > 1 && version(3, 0) > version(2, MAX_GATHERED - 1));
        // A gathered entry is only valid at the top: with a write id of its own, refused.
        let mut with_id = entry(vec![Request::new(put("z", "1"))]);
        with_id.id = id(9);
        assert!(matches!(
            s.apply_entry(3, &with_id),
            Response::Rejected { .. }
        ));
        assert!(s.get(b"z").is_none());
    }

    #[test]
    fn a_retried_write_is_applied_once() {
        let s = MemStore::new();
        let req = |seq, v: &str| Request {
            id: Some(WriteId { client: 9, seq }),
            command: put("k", v),
        };
        let put_at = |version| Response::Put { version };
        assert_eq!(s.apply_request(1, &req(1, "a")), put_at(1));
        // The retry (a new log entry carrying the same id) returns the first answer.
        assert_eq!(s.apply_request(2, &req(1, "a")), put_at(1));
        assert_eq!(s.get(b"k").unwrap().version, 1);
        assert_eq!(s.apply_request(3, &req(3, "c")), put_at(3));
        // Pipelined writes arrive out of order: seq 2 after seq 3 is still applied, once.
        assert_eq!(s.apply_request(4, &req(2, "b")), put_at(4));
        assert_eq!(s.apply_request(5, &req(2, "b")), put_at(4));
        assert_eq!(s.get(b"k").unwrap().value, "b");
        assert_eq!(s.apply_request(6, &Request::new(put("k", "d"))), put_at(6));
        // Far beyond the window, an old seq is refused rather than risked.
        let far = SESSION_WINDOW + 10;
        assert_eq!(s.apply_request(7, &req(far, "e")), put_at(7));
        assert!(matches!(
            s.apply_request(8, &req(5, "x")),
            Response::Rejected { .. }
        ));
        assert_eq!(s.get(b"k").unwrap().value, "e");
        assert_eq!(
            s.user_keys(),
            1,
            "session keys are not counted as user keys"
        );
        assert_eq!(s.user_bytes(), 2);
    }

    #[test]
    fn a_checkpoint_cut_at_the_last_version_holds_gathered_writes_and_nothing_later() {
        // Regression: the cut used to be the applied log index, below every gathered version,
        // so a checkpoint held none of the values gathered entries wrote (lost on restart).
        let s = Arc::new(MemStore::new());
        let gathered = |n: usize, tag: &str| {
            Request::new(Command::Gathered(
                (0..n)
                    .map(|i| Request::new(put(&format!("k{i}"), tag)))
                    .collect(),
            ))
        };
        for index in 1..=10 {
            s.apply_entry(index, &gathered(50, "old"));
        }
        assert_eq!(s.last_version(), crate::command::version(10, 49));
        let scan = s.begin_checkpoint(s.last_version()).unwrap();
        s.apply_entry(11, &gathered(25, "new"));
        s.apply_entry(
            12,
            &Request::new(Command::Gathered(vec![Request::new(del("k49"))])),
        );
        let mut seen = HashMap::new();
        scan.for_each_chunk(|chunk| {
            for (k, v) in chunk {
                seen.insert(k.clone(), v.clone());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 50, "every key the gathered entries wrote");
        assert!(
            seen.values().all(|v| v.value == "old"),
            "nothing written after the cut"
        );
        assert_eq!(
            seen[&Bytes::from_static(b"k49")].version,
            crate::command::version(10, 49)
        );
        // A store loaded from the image continues the versions where it stopped.
        let loaded = MemStore::new();
        for (k, v) in seen {
            loaded.load(k, v);
        }
        assert_eq!(loaded.last_version(), crate::command::version(10, 49));
    }

    #[test]
    fn checkpoint_sees_state_at_its_index() {
        let s = Arc::new(MemStore::new());
        for i in 0..1000u64 {
            s.apply(i + 1, &put(&format!("k{i}"), "old"));
        }
        let scan = s.begin_checkpoint(1000).unwrap();
        assert!(matches!(
            s.begin_checkpoint(1000),
            Err(Error::CheckpointInProgress)
        ));
        // Changes after the checkpoint index must not show up in it.
        for i in 0..500u64 {
            s.apply(1001 + i, &put(&format!("k{i}"), "new"));
        }
        s.apply(2000, &del("k999"));
        s.apply(2001, &put("fresh", "x"));
        let mut seen = HashMap::new();
        let n = scan
            .for_each_chunk(|chunk| {
                for (k, v) in chunk {
                    assert!(
                        seen.insert(k.clone(), v.clone()).is_none(),
                        "duplicate {k:?}"
                    );
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 1000);
        assert_eq!(seen.len(), 1000);
        assert!(seen.values().all(|v| v.value == "old" && v.version <= 1000));
        assert!(s.begin_checkpoint(2001).is_ok(), "the scan ended on drop");
    }
}
