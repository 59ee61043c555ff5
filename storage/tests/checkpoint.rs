//! Checkpoints: taken while another thread keeps applying, the file must equal the model's
//! state at the checkpoint's index; damaged files are refused with their offset; the chunk
//! stream reproduces the file and stays readable after the file's name is deleted.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::init_tracing;
use islab_storage::{
    Checkpoint, CheckpointMeta, CheckpointReceiver, Command, Error, LogPos, MemStore, Versioned,
};
use rand::{Rng, SeedableRng};

fn meta(at: u64) -> CheckpointMeta {
    CheckpointMeta {
        group: 3,
        last_applied: Some(LogPos { term: 1, index: at }),
        membership: Bytes::from_static(b"members"),
        snapshot_id: format!("snap-{at}"),
    }
}

fn random_command(rng: &mut impl Rng) -> Command {
    let key = Bytes::from(format!("key-{:05}", rng.random_range(0..20_000)));
    match rng.random_range(0..10) {
        0 => Command::Delete { key },
        1 => Command::Batch(vec![
            Command::Put {
                key: key.clone(),
                value: Bytes::from(vec![rng.random(); 40]),
                expires_at: Some(rng.random_range(0..1 << 40)),
            },
            Command::Delete {
                key: Bytes::from(format!("key-{:05}", rng.random_range(0..20_000))),
            },
        ]),
        _ => Command::Put {
            key,
            value: Bytes::from(vec![rng.random(); rng.random_range(0..300)]),
            expires_at: None,
        },
    }
}

/// Replays `log[..=at]` into a plain map: the model of the store at `at`.
fn model_at(log: &[(u64, Command)], at: u64) -> BTreeMap<Bytes, Versioned> {
    let model = MemStore::new();
    for (index, cmd) in log.iter().take_while(|(i, _)| *i <= at) {
        model.apply(*index, cmd);
    }
    let mut out = BTreeMap::new();
    model.for_each(|k, v| {
        out.insert(k.clone(), v.clone());
    });
    out
}

#[test]
fn a_checkpoint_taken_under_concurrent_writes_equals_the_model_at_its_index() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut log = Vec::new();
    let mut index = 0;
    tracing::info!("--- load 50,000 entries");
    for _ in 0..50_000 {
        index += 1;
        let cmd = random_command(&mut rng);
        store.apply(index, &cmd);
        log.push((index, cmd));
    }
    for round in 0..5 {
        tracing::info!("--- round {round}: checkpoint while a thread keeps applying");
        let at = index;
        let scan = store.begin_checkpoint(at).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let applier = {
            let store = store.clone();
            let stop = stop.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(round);
            let mut index = index;
            std::thread::spawn(move || {
                let mut applied = Vec::new();
                while !stop.load(Ordering::Relaxed) || applied.len() < 2000 {
                    index += 1;
                    let cmd = random_command(&mut rng);
                    store.apply(index, &cmd);
                    applied.push((index, cmd));
                }
                applied
            })
        };
        let path = dir.path().join(format!("{round}.ckpt"));
        let ckpt = Checkpoint::write(&path, &meta(at), scan).unwrap();
        stop.store(true, Ordering::Relaxed);
        let applied = applier.join().unwrap();
        index += applied.len() as u64;
        log.extend(applied);

        let mut loaded = BTreeMap::new();
        ckpt.for_each(|k, v| {
            assert!(loaded.insert(k, v).is_none(), "a key appears twice");
        })
        .unwrap();
        let want = model_at(&log, at);
        assert_eq!(loaded.len(), want.len(), "round {round}: key count");
        assert!(
            loaded == want,
            "round {round}: image differs from the model at {at}"
        );
        assert_eq!(ckpt.keys(), want.len() as u64);
        assert_eq!(ckpt.meta(), &meta(at));
        tracing::info!(
            keys = want.len(),
            applied_meanwhile = index - at,
            "checkpoint matches"
        );
    }
    // And the live store equals the model at its last index.
    let mut live = BTreeMap::new();
    store.for_each(|k, v| {
        live.insert(k.clone(), v.clone());
    });
    assert!(live == model_at(&log, index));
}

#[test]
fn damaged_checkpoints_are_refused_with_their_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    for i in 1..=5000u64 {
        store.apply(
            i,
            &Command::Put {
                key: Bytes::from(format!("k{i}")),
                value: Bytes::from(vec![(i % 251) as u8; 100]),
                expires_at: None,
            },
        );
    }
    let path = dir.path().join("c.ckpt");
    let ckpt =
        Checkpoint::write(&path, &meta(5000), store.begin_checkpoint(5000).unwrap()).unwrap();
    assert!(ckpt.blocks() >= 2);
    let loaded = ckpt.load().unwrap();
    assert_eq!(loaded.len(), 5000);
    assert_eq!(
        loaded.get(b"k77").unwrap().value,
        Bytes::from(vec![77u8; 100])
    );

    let pristine = std::fs::read(&path).unwrap();
    let mut bad = pristine.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let err = Checkpoint::open(&path).unwrap().load().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { file, .. } if *file == path),
        "{err}"
    );
    assert!(err.to_string().contains("checksum"), "{err}");

    std::fs::write(&path, &pristine[..pristine.len() - 10]).unwrap();
    let err = Checkpoint::open(&path).unwrap_err();
    assert!(err.to_string().contains("trailer"), "{err}");

    std::fs::write(&path, b"not a checkpoint at all, just some bytes here").unwrap();
    assert!(Checkpoint::open(&path).is_err());
}

#[test]
fn the_chunk_stream_reproduces_the_file_even_after_it_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    for i in 1..=3000u64 {
        store.apply(
            i,
            &Command::Put {
                key: Bytes::from(format!("k{i}")),
                value: Bytes::from(format!("value {i}")),
                expires_at: None,
            },
        );
    }
    let src = dir.path().join("src.ckpt");
    let ckpt = Checkpoint::write(&src, &meta(3000), store.begin_checkpoint(3000).unwrap()).unwrap();
    std::fs::remove_file(&src).unwrap(); // a newer checkpoint replaced it mid-transfer
    let dst = dir.path().join("dst.ckpt");
    let mut rx = CheckpointReceiver::create(&dst).unwrap();
    let mut offset = 0;
    loop {
        let chunk = ckpt.read_chunk(offset, 1000).unwrap();
        if chunk.is_empty() {
            break;
        }
        rx.write_chunk(offset, &chunk).unwrap();
        offset += chunk.len() as u64;
    }
    assert!(
        rx.write_chunk(offset + 5, b"x").is_err(),
        "out-of-order chunk accepted"
    );
    let received = rx.finish().unwrap();
    assert_eq!(received.meta(), ckpt.meta());
    assert_eq!(received.load().unwrap().len(), 3000);
}

/// Found by the `request` fuzz target: the writer stores `expires_at + 1`, which overflowed
/// for an expiry of `u64::MAX` (a huge TTL saturates to it). Apply clamps it now, and the
/// checkpoint reproduces the store exactly.
#[test]
fn an_expiry_at_the_end_of_time_survives_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    store.apply(
        1,
        &Command::Put {
            key: Bytes::from_static(b"forever"),
            value: Bytes::from_static(b"v"),
            expires_at: Some(u64::MAX),
        },
    );
    store.apply(
        2,
        &Command::Cas {
            key: Bytes::from_static(b"cas"),
            expected: None,
            value: Bytes::from_static(b"v"),
            expires_at: Some(u64::MAX),
        },
    );
    let path = dir.path().join("c.ckpt");
    let ckpt = Checkpoint::write(&path, &meta(2), store.begin_checkpoint(2).unwrap()).unwrap();
    let loaded = ckpt.load().unwrap();
    for key in [&b"forever"[..], b"cas"] {
        assert_eq!(loaded.get(key), store.get(key));
        assert_eq!(loaded.get(key).unwrap().expires_at, Some(u64::MAX - 1));
    }
}

/// Found by the `checkpoint` fuzz target: `load` presized the map from the trailer's key
/// count before any block was checked, so a damaged count (with a valid trailer checksum)
/// reserved up to 2^30 keys and ran the process out of memory. It is refused now, cheaply.
#[test]
fn a_trailer_claiming_too_many_keys_is_refused_without_reserving_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    store.apply(
        1,
        &Command::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            expires_at: None,
        },
    );
    let path = dir.path().join("c.ckpt");
    Checkpoint::write(&path, &meta(1), store.begin_checkpoint(1).unwrap()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let trailer = bytes.len() - 28;
    bytes[trailer + 8..trailer + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[trailer..trailer + 24]);
    bytes[trailer + 24..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    assert_eq!(ckpt.keys(), 1 << 40);
    let err = ckpt.load().unwrap_err();
    assert!(err.to_string().contains("1099511627776 keys"), "{err}");
}

/// An lz4 block that decompresses to less than its header's raw length is damage, not a
/// shorter block.
#[test]
fn an_lz4_block_shorter_than_its_header_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    for i in 1..=100u64 {
        store.apply(
            i,
            &Command::Put {
                key: Bytes::from(format!("key-{i:04}")),
                value: Bytes::from(vec![b'x'; 64]),
                expires_at: None,
            },
        );
    }
    let path = dir.path().join("c.ckpt");
    Checkpoint::write(&path, &meta(100), store.begin_checkpoint(100).unwrap()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let meta_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let block = 16 + meta_len + 4;
    assert_eq!(bytes[block + 8], 1, "the block should be lz4-compressed");
    let raw_len = u32::from_le_bytes(bytes[block..block + 4].try_into().unwrap());
    bytes[block..block + 4].copy_from_slice(&(raw_len + 1000).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = Checkpoint::open(&path).unwrap().load().unwrap_err();
    assert!(err.to_string().contains("header says"), "{err}");
}

/// A store of `n` small keys: some with an expiry, some of the store's own session keys.
fn many_small_keys(n: u64) -> Arc<MemStore> {
    let store = Arc::new(MemStore::new());
    for i in 1..=n {
        let command = Command::Put {
            key: Bytes::from(format!("k{i:07}")),
            value: Bytes::from(vec![(i % 251) as u8; (i % 40) as usize]),
            expires_at: i.is_multiple_of(7).then_some(i << 20),
        };
        if i.is_multiple_of(1000) {
            let id = islab_storage::WriteId { client: i, seq: 1 };
            store.apply_request(
                i,
                &islab_storage::Request {
                    id: Some(id),
                    command,
                },
            );
        } else {
            store.apply(i, &command);
        }
    }
    store
}

/// Where each block of a checkpoint file starts (from the format: header, then blocks of
/// `raw_len u32 | stored_len u32 | codec u8 | crc u32 | stored bytes`, then the trailer).
fn block_offsets(file: &[u8]) -> Vec<usize> {
    let meta_len = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let (mut pos, end) = (16 + meta_len + 4, file.len() - 28);
    let mut offsets = Vec::new();
    while pos < end {
        offsets.push(pos);
        pos += 13 + u32::from_le_bytes(file[pos + 4..pos + 8].try_into().unwrap()) as usize;
    }
    offsets
}

/// `load` on another thread, failing the test if it neither returns nor panics in time.
fn load_within(
    path: &std::path::Path,
    limit: std::time::Duration,
) -> islab_storage::Result<MemStore> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Checkpoint::open(&path).and_then(|c| c.load()));
    });
    rx.recv_timeout(limit)
        .expect("load hung (or panicked) instead of returning")
}

#[test]
fn a_checkpoint_of_many_blocks_loads_exactly_what_was_written() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    tracing::info!("--- 300,000 small keys, written as one checkpoint");
    let n = 300_000;
    let store = many_small_keys(n);
    let path = dir.path().join("many.ckpt");
    let ckpt = Checkpoint::write(&path, &meta(n), store.begin_checkpoint(n).unwrap()).unwrap();
    assert!(ckpt.blocks() >= 20, "only {} blocks", ckpt.blocks());

    tracing::info!(blocks = ckpt.blocks(), "--- load it on several threads");
    let loaded = load_within(&path, std::time::Duration::from_secs(120)).unwrap();
    assert_eq!(loaded.len(), store.len());
    assert_eq!(ckpt.keys(), store.len() as u64);
    assert_eq!(loaded.bytes(), store.bytes());
    assert_eq!(loaded.user_keys(), store.user_keys());
    assert_eq!(loaded.user_bytes(), store.user_bytes());
    let mut compared = 0;
    store.for_each(|k, v| {
        assert_eq!(loaded.get(k).as_ref(), Some(v), "key {k:?}");
        compared += 1;
    });
    assert_eq!(compared, loaded.len());
}

#[test]
fn damage_anywhere_in_a_many_block_checkpoint_is_refused_with_its_offset() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000;
    let store = many_small_keys(n);
    let path = dir.path().join("c.ckpt");
    Checkpoint::write(&path, &meta(n), store.begin_checkpoint(n).unwrap()).unwrap();
    let pristine = std::fs::read(&path).unwrap();
    let offsets = block_offsets(&pristine);
    assert!(offsets.len() >= 10, "only {} blocks", offsets.len());
    let limit = std::time::Duration::from_secs(60);

    // The first block stops the workers while the reader may still be waiting to hand over
    // more; the middle one while blocks on both sides are in flight; the last one at the end.
    for (which, block) in [
        ("first", 0),
        ("middle", offsets.len() / 2),
        ("last", offsets.len() - 1),
    ] {
        let at = offsets[block];
        tracing::info!("--- a flipped byte in the {which} block (offset {at})");
        let mut bad = pristine.clone();
        bad[at + 13 + 100] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let err = load_within(&path, limit).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { file, offset, .. } if *file == path && *offset == at as u64),
            "{which} block at {at}: {err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");
        let verified = Checkpoint::open(&path).unwrap().verify().unwrap_err();
        assert_eq!(verified.to_string(), err.to_string());

        tracing::info!("--- a block length in the {which} block that runs past the file");
        let mut bad = pristine.clone();
        bad[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        let err = load_within(&path, limit).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { offset, .. } if *offset == at as u64),
            "{which} block at {at}: {err}"
        );
        assert!(err.to_string().contains("length out of range"), "{err}");
    }

    tracing::info!("--- the pristine file still loads");
    std::fs::write(&path, &pristine).unwrap();
    assert_eq!(load_within(&path, limit).unwrap().len(), store.len());
}

/// Recomputes every checksum of a checkpoint file that can still be found (as the fuzz
/// target's `FIX_CRCS` mode does), so that damage behind the checksums is what gets tested.
fn fix_crcs(file: &mut [u8]) {
    let end = file.len() - 28;
    for at in block_offsets(file) {
        let stored = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
        if at + 13 + stored > end {
            break;
        }
        let crc = crc32c::crc32c(&file[at + 13..at + 13 + stored]);
        file[at + 9..at + 13].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The `i`th key of [`noisy_checkpoint`]: 16 hex digits that share no prefix for lz4 to find.
fn noisy_key(i: u64) -> String {
    format!("{:016x}", (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A checkpoint of several blocks that lz4 cannot shrink (stored as they are, so a key's
/// bytes can be found in the file), written once for every case.
fn noisy_checkpoint() -> &'static (Vec<u8>, u64) {
    static FILE: std::sync::OnceLock<(Vec<u8>, u64)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let n = 16_000;
        let store = Arc::new(MemStore::new());
        for i in 0..n {
            let mut value = vec![0u8; 40];
            rng.fill(&mut value[..]);
            let command = Command::Put {
                key: Bytes::from(noisy_key(i)),
                value: Bytes::from(value),
                expires_at: None,
            };
            store.apply(i + 1, &command);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.ckpt");
        let ckpt = Checkpoint::write(&path, &meta(n), store.begin_checkpoint(n).unwrap()).unwrap();
        assert!(ckpt.blocks() >= 3, "only {} blocks", ckpt.blocks());
        let file = std::fs::read(&path).unwrap();
        let codecs: Vec<u8> = block_offsets(&file)
            .iter()
            .map(|&at| file[at + 8])
            .collect();
        assert!(
            codecs.iter().all(|&c| c == 0),
            "compressed blocks: {codecs:?}"
        );
        (file, n)
    })
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR these bytes (positions in the block area, wrapped) with these masks.
    Flip(Vec<(usize, u8)>),
    /// Write key `from`'s bytes over key `to`'s: one key twice, another gone.
    Duplicate { from: u64, to: u64 },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        proptest::collection::vec((any::<usize>(), 1..=255u8), 1..4).prop_map(Damage::Flip),
        (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Damage::Duplicate { from, to }),
    ]
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The fuzz target's rule on multi-block files: `verify` (one thread, file order) and
    /// `load` (several threads) agree on every file, report the same error, and load the
    /// same image a key-by-key load in file order builds.
    #[test]
    fn load_agrees_with_a_sequential_read_of_a_damaged_file(damage in damage(), fix in any::<bool>()) {
        let (pristine, n) = noisy_checkpoint();
        let mut file = pristine.clone();
        let data_start = block_offsets(&file)[0];
        let data_len = file.len() - 28 - data_start;
        let find = |file: &[u8], key: &[u8]| file.windows(key.len()).position(|w| w == key);
        match &damage {
            Damage::Flip(flips) => {
                for (at, mask) in flips {
                    file[data_start + at % data_len] ^= mask;
                }
            }
            Damage::Duplicate { from, to } => {
                let (from, to) = (noisy_key(from % n), noisy_key(to % n));
                let at = find(&file, to.as_bytes()).unwrap();
                file[at..at + to.len()].copy_from_slice(from.as_bytes());
            }
        }
        if fix || matches!(damage, Damage::Duplicate { .. }) {
            fix_crcs(&mut file);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.ckpt");
        std::fs::write(&path, &file).unwrap();
        let ckpt = Checkpoint::open(&path).unwrap();
        let in_file_order = MemStore::new();
        let sequential = ckpt.for_each(|k, v| in_file_order.load(k, v));
        let loaded = load_within(&path, std::time::Duration::from_secs(60));
        match (sequential, loaded) {
            (Ok(()), Ok(loaded)) => {
                prop_assert_eq!(loaded.len(), in_file_order.len());
                prop_assert_eq!(loaded.bytes(), in_file_order.bytes());
                let mut same = true;
                in_file_order.for_each(|k, v| same &= loaded.get(k).as_ref() == Some(v));
                prop_assert!(same, "the loaded image differs from the file-order one");
            }
            (Err(s), Err(l)) => {
                prop_assert!(matches!(l, Error::Corrupt { .. }), "{}", l);
                prop_assert_eq!(s.to_string(), l.to_string());
            }
            (s, l) => prop_assert!(false, "sequential {:?}, load {:?}", s, l.map(|s| s.len())),
        }
    }
}
