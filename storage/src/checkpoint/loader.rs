//! Loading a checkpoint on several threads.
//!
//! Restarting a node waits for its checkpoints to load, and one thread loaded about 1M keys a
//! second (10M keys: 9–10 s). Once a block has been read, its work depends on no other
//! block, so the calling thread only reads, and workers do the rest:
//!
//! ```text
//!   calling thread                      bounded channel      N workers
//!   read block headers and bytes   ──▶  (2 blocks per   ──▶  checksum, codec, lz4, decode;
//!   in file order, check lengths        worker)              insert into the store a lock
//!   against the file, count blocks                           shard at a time (BulkLoad);
//!                                                            count keys
//! ```
//!
//! Every check of the sequential [`Checkpoint::for_each`] is made: each block's lengths,
//! checksum, codec and content, then the trailer's key and block counts once every block is
//! in. The channel bounds the memory of blocks read but not yet decoded.
//!
//! # Damage
//!
//! The error reported is the one a single thread reading in file order reports: the first
//! damaged block's. A thread that finds damage lowers `first_damage` to the block's offset;
//! from then on blocks after it are skipped (they cannot hold the first damage), blocks
//! before it are still checked (they might), and the reader stops, as every block it has
//! not read yet lies after it. The workers drain the channel until the reader has dropped its
//! end, so the reader never waits on a full channel for nothing; and if every worker is gone
//! (a panic), the channel's receiver goes with them and the reader's send fails instead.
//!
//! # Duplicate keys
//!
//! Blocks are inserted in no particular order. That builds the same image only because a
//! checkpoint holds each key once. A file that holds a key twice (damage whose checksums were
//! made to match) ends the load with that key, and the caller loads it again in file order,
//! so the last copy wins as it always did.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::checkpoint::blocks::StoredBlock;
use crate::checkpoint::format::decode_block;
use crate::checkpoint::{Checkpoint, corrupt, io_err};
use crate::error::{Error, Result};
use crate::memstore::MemStore;

/// Blocks read ahead per worker.
const QUEUE_PER_WORKER: usize = 2;

/// What the reader and the workers share.
struct Progress {
    /// The offset of the first damaged block found so far (`u64::MAX`: none yet).
    first_damage: AtomicU64,
    /// A key was found twice: nothing more here matters (see the module docs).
    duplicate: AtomicBool,
}

impl Progress {
    /// Whether the block at `pos` still has to be read and checked.
    fn wanted(&self, pos: u64) -> bool {
        pos < self.first_damage.load(Ordering::Relaxed) && !self.duplicate.load(Ordering::Relaxed)
    }

    fn damage_at(&self, pos: u64) {
        self.first_damage.fetch_min(pos, Ordering::Relaxed);
    }
}

/// What one worker did.
#[derive(Default)]
struct Worked {
    keys: u64,
    /// The earliest damaged block it found, and where it starts.
    damage: Option<(u64, Error)>,
    duplicate: Option<Bytes>,
}

/// Loads `ckpt` into the empty `store` on the calling thread and `workers` more (at least
/// one). Returns a key that appears twice, if one does (the store is then incomplete).
pub(super) fn load(ckpt: &Checkpoint, store: &MemStore, workers: usize) -> Result<Option<Bytes>> {
    let workers = workers.max(1);
    let progress = Progress {
        first_damage: AtomicU64::new(u64::MAX),
        duplicate: AtomicBool::new(false),
    };
    let (tx, rx) = sync_channel::<StoredBlock>(workers * QUEUE_PER_WORKER);
    let rx = Arc::new(Mutex::new(rx));
    let (read, worked) = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers);
        let mut not_started = None;
        for i in 0..workers {
            let (rx, progress) = (rx.clone(), &progress);
            let spawned = std::thread::Builder::new()
                .name(format!("checkpoint-load-{i}"))
                .spawn_scoped(s, move || work(ckpt, store, &rx, progress));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    not_started = Some(e);
                    break; // go on with the workers that did start
                }
            }
        }
        drop(rx);
        let read = match not_started {
            Some(e) if handles.is_empty() => Err((
                ckpt.data_start,
                io_err("starting a thread to load", &ckpt.path, e),
            )),
            _ => feed(ckpt, &progress, |block| tx.send(block).is_ok()),
        };
        drop(tx);
        let worked: Vec<Worked> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (read, worked)
    });

    let (mut keys, mut damage, mut duplicate) = (0, Vec::new(), None);
    let blocks = read.unwrap_or_else(|e| {
        damage.push(e);
        0
    });
    for w in worked {
        keys += w.keys;
        damage.extend(w.damage);
        duplicate = duplicate.or(w.duplicate);
    }
    if duplicate.is_some() {
        // Blocks were skipped once it was found, an earlier damaged one perhaps: loading
        // the file again in file order finds the first damage, if there is any.
        return Ok(duplicate);
    }
    if let Some((_, first)) = damage.into_iter().min_by_key(|(pos, _)| *pos) {
        return Err(first);
    }
    ckpt.check_counts(keys, blocks)?;
    Ok(None)
}

/// Reads the blocks and hands them to `send` until the end, the first damage, a duplicate
/// key, or `send` refusing (no worker left). Returns how many blocks were sent, or the
/// error and the offset of the block it is about.
fn feed(
    ckpt: &Checkpoint,
    progress: &Progress,
    mut send: impl FnMut(StoredBlock) -> bool,
) -> Result<u64, (u64, Error)> {
    let mut sent = 0;
    let mut blocks = ckpt.read_blocks();
    loop {
        let pos = blocks.pos;
        if !progress.wanted(pos) {
            break;
        }
        let Some(block) = blocks.next() else {
            break;
        };
        let block = block.map_err(|e| {
            progress.damage_at(pos);
            (pos, e)
        })?;
        if !send(block) {
            break;
        }
        sent += 1;
    }
    Ok(sent)
}

/// One worker: takes blocks until the reader is done and the channel empty.
fn work(
    ckpt: &Checkpoint,
    store: &MemStore,
    rx: &Mutex<Receiver<StoredBlock>>,
    progress: &Progress,
) -> Worked {
    let mut bulk = store.bulk_load();
    let mut worked = Worked::default();
    loop {
        // Waiting for a block while holding the lock is fine: the other workers would
        // only wait for the next block too.
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(block) = next else {
            break; // the reader is done and the channel empty
        };
        let pos = block.pos;
        if !progress.wanted(pos) {
            continue; // drained, so that the reader is never stuck on a full channel
        }
        let decoded = block.unpack(&ckpt.path).and_then(|raw| {
            decode_block(&raw, &mut |key, value| bulk.push(key, value))
                .map_err(|reason| corrupt(&ckpt.path, pos, reason))
        });
        match decoded {
            Ok(n) => worked.keys += n,
            Err(e) => {
                progress.damage_at(pos);
                if worked.damage.as_ref().is_none_or(|(first, _)| pos < *first) {
                    worked.damage = Some((pos, e));
                }
            }
        }
        if bulk.duplicate().is_some() {
            progress.duplicate.store(true, Ordering::Relaxed);
        }
    }
    worked.duplicate = bulk.finish();
    if worked.duplicate.is_some() {
        progress.duplicate.store(true, Ordering::Relaxed);
    }
    worked
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::super::CheckpointMeta;
    use super::super::format::{
        BLOCK_HEADER_LEN, CODEC_LZ4, CODEC_NONE, encode_header, encode_key, encode_trailer,
        write_block,
    };
    use super::*;
    use crate::RESERVED_PREFIX;
    use crate::memstore::Versioned;

    /// A checkpoint file holding exactly `blocks` (one block per inner list): blocks far
    /// smaller than the writer makes, and keys it would never write twice.
    fn write_blocks(path: &Path, blocks: &[Vec<(Bytes, Versioned)>]) -> Checkpoint {
        let meta = CheckpointMeta {
            group: 1,
            last_applied: None,
            membership: Bytes::new(),
            snapshot_id: "test".into(),
        };
        let mut file = encode_header(&meta).unwrap();
        let mut keys = 0;
        for block in blocks {
            let mut raw = Vec::new();
            for (key, v) in block {
                encode_key(&mut raw, key, v);
                keys += 1;
            }
            write_block(&mut file, &raw).unwrap();
        }
        file.extend_from_slice(&encode_trailer(keys, blocks.len() as u64));
        std::fs::write(path, &file).unwrap();
        Checkpoint::open(path).unwrap()
    }

    /// `blocks` blocks: even ones of `per_block` keys with values of many sizes (some with an
    /// expiry, some of the store's reserved keys), lz4-compressed; odd ones of one key whose
    /// value is noise, stored uncompressed.
    fn sample(blocks: u64, per_block: u64) -> Vec<Vec<(Bytes, Versioned)>> {
        let versioned = |value: Vec<u8>, n: u64| Versioned {
            value: Bytes::from(value),
            version: n + 1,
            expires_at: n.is_multiple_of(5).then_some(n * 1000),
        };
        let entry = |n: u64| {
            let key = if n.is_multiple_of(97) {
                Bytes::from([RESERVED_PREFIX, format!("session/{n}").as_bytes()].concat())
            } else {
                Bytes::from(format!("key-{n:08}"))
            };
            (
                key,
                versioned((0..n * 7 % 300).map(|j| (j * n) as u8).collect(), n),
            )
        };
        let noise = |n: u64| {
            let mut x = n | 1;
            let value = (0..2000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (Bytes::from(format!("noise-{n}")), versioned(value, n))
        };
        (0..blocks)
            .map(|b| match b % 2 {
                0 => (0..per_block).map(|i| entry(b * per_block + i)).collect(),
                _ => vec![noise(b)],
            })
            .collect()
    }

    fn contents(store: &MemStore) -> BTreeMap<Bytes, Versioned> {
        let mut out = BTreeMap::new();
        store.for_each(|k, v| {
            out.insert(k.clone(), v.clone());
        });
        out
    }

    fn block_offsets(ckpt: &Checkpoint) -> Vec<u64> {
        ckpt.read_blocks().map(|b| b.unwrap().pos).collect()
    }

    #[test]
    fn any_number_of_workers_loads_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = sample(300, 50);
        let ckpt = write_blocks(&dir.path().join("c"), &blocks);
        let one_by_one = MemStore::new();
        ckpt.for_each(|k, v| one_by_one.load(k, v)).unwrap();
        let want = contents(&one_by_one);
        assert_eq!(want.len(), 150 * 50 + 150);
        let codecs: Vec<u8> = ckpt.read_blocks().map(|b| b.unwrap().codec).collect();
        assert!(codecs.contains(&CODEC_LZ4) && codecs.contains(&CODEC_NONE));
        for workers in [1, 2, 3, 8] {
            let loaded = ckpt.load_on(workers).unwrap();
            assert!(contents(&loaded) == want, "{workers} workers");
            assert_eq!(loaded.bytes(), one_by_one.bytes());
            assert_eq!(loaded.user_keys(), one_by_one.user_keys());
            assert_eq!(loaded.user_bytes(), one_by_one.user_bytes());
        }
    }

    #[test]
    fn a_key_twice_loads_as_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut blocks = sample(200, 20);
        let copy = |version| Versioned {
            value: Bytes::from(format!("copy {version}")),
            version,
            expires_at: None,
        };
        let dup = Bytes::from_static(b"twice");
        blocks[3].push((dup.clone(), copy(1)));
        blocks[150].push((dup.clone(), copy(2)));
        let ckpt = write_blocks(&dir.path().join("c"), &blocks);
        ckpt.verify().unwrap();
        assert_eq!(load(&ckpt, &MemStore::new(), 2).unwrap(), Some(dup));
        let one_by_one = MemStore::new();
        ckpt.for_each(|k, v| one_by_one.load(k, v)).unwrap();
        for workers in [1, 2, 8] {
            let loaded = ckpt.load_on(workers).unwrap();
            assert_eq!(loaded.get(b"twice"), Some(copy(2)), "the last copy wins");
            assert!(contents(&loaded) == contents(&one_by_one));
            assert_eq!(loaded.bytes(), one_by_one.bytes());
        }
    }

    #[test]
    fn of_two_damaged_blocks_the_first_in_the_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let ckpt = write_blocks(&path, &sample(300, 50));
        let offsets = block_offsets(&ckpt);
        let mut bytes = std::fs::read(&path).unwrap();
        for b in [40, 200] {
            bytes[offsets[b] as usize + BLOCK_HEADER_LEN + 3] ^= 0x55;
        }
        std::fs::write(&path, &bytes).unwrap();
        let ckpt = Checkpoint::open(&path).unwrap();
        for workers in [1, 2, 8] {
            for _ in 0..5 {
                let err = ckpt.load_on(workers).unwrap_err();
                assert!(
                    matches!(&err, Error::Corrupt { offset, .. } if *offset == offsets[40]),
                    "{workers} workers: {err}"
                );
            }
        }
    }
}
