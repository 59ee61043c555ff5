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
