//! Running the real `islab` binary, and building the files it inspects with the real storage
//! engine.

#![allow(dead_code, reason = "each test target uses part of this")]

pub mod playground;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use bytes::Bytes;
use islab_raft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};
use islab_storage::{
    Checkpoint, CheckpointMeta, Command, LogPos, LogRecord, MemStore, Wal, WalConfig, codec,
};

/// Runs `islab` with `args`; the environment cannot change its output format.
pub fn islab(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_islab"))
        .args(args)
        .env_remove("ISLAB_ENDPOINTS")
        .env_remove("RUST_LOG")
        .output()
        .expect("running islab")
}

/// Asserts the command succeeded and returns its stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}; stdout: {}; stderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

/// Parses JSON Lines output.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: CommittedLeaderId::new(term),
        index,
    }
}

fn entry(term: u64, index: u64, payload: &EntryPayload) -> LogRecord {
    LogRecord {
        term,
        index,
        payload: Bytes::from(codec::encode(payload).unwrap()),
    }
}

fn put(key: String, value_len: usize) -> EntryPayload {
    EntryPayload::Normal(islab_storage::Request::new(Command::Put {
        key: Bytes::from(key),
        value: Bytes::from(vec![b'v'; value_len]),
        expires_at: None,
    }))
}

fn membership() -> Membership {
    Membership::new_with_defaults(vec![BTreeSet::from([1, 2, 3])], [])
}

/// What [`write_wal`] writes, record by record.
pub const GROUP1_ENTRY_RECORDS: u64 = 12;
pub const GROUP2_ENTRY_RECORDS: u64 = 3;

/// Writes a WAL under `data_dir/wal` with the real engine and small segments:
///
/// - group 2: entries 1..=3 (term 1, small puts)
/// - group 1: entries 1..=10 (term 1, 600-byte puts; the WAL rotates to a second segment)
/// - group 1: truncate after 8, then entries 9 (blank) and 10 (membership) in term 2
/// - group 1: purge up to 1.3, vote for node 1 in term 2 (committed), committed 2.10
pub fn write_wal(data_dir: &Path) {
    let config = WalConfig {
        segment_size: 4096,
        ..Default::default()
    };
    let (wal, _) = Wal::open(data_dir.join("wal"), config).unwrap();
    let durable = |r: islab_storage::Result<()>| r.expect("durable");
    let small: Vec<_> = (1..=3)
        .map(|i| entry(1, i, &put(format!("b{i}"), 3)))
        .collect();
    wal.append(2, small, durable).unwrap();
    let big: Vec<_> = (1..=10)
        .map(|i| entry(1, i, &put(format!("a{i}"), 600)))
        .collect();
    wal.append(1, big, durable).unwrap();
    wal.truncate_after(1, Some(8)).unwrap();
    let rewritten = vec![
        entry(2, 9, &EntryPayload::Blank),
        entry(2, 10, &EntryPayload::Membership(membership())),
    ];
    wal.append(1, rewritten, durable).unwrap();
    wal.purge(1, LogPos { term: 1, index: 3 }).unwrap();
    let vote = Bytes::from(codec::encode(&Vote::new_committed(2, 1)).unwrap());
    wal.save_vote(1, vote, durable).unwrap();
    let committed = Bytes::from(codec::encode(&Some(id(2, 10))).unwrap());
    wal.save_committed(1, committed).unwrap();
    wal.flush().unwrap();
    drop(wal);
}

/// Keys in the checkpoint [`write_checkpoint`] writes.
pub const CHECKPOINT_KEYS: u64 = 1000;

/// Writes a checkpoint of group 7 at 2.1000 holding `key0000`..`key0999` (key `i` has version
/// `i + 1`) with the real engine.
pub fn write_checkpoint(path: &Path) -> Checkpoint {
    let store = Arc::new(MemStore::new());
    for i in 0..CHECKPOINT_KEYS {
        store.apply(
            i + 1,
            &Command::Put {
                key: Bytes::from(format!("key{i:04}")),
                value: Bytes::from(format!("value of key {i}")),
                expires_at: None,
            },
        );
    }
    let scan = store.begin_checkpoint(CHECKPOINT_KEYS).unwrap();
    let meta = CheckpointMeta {
        group: 7,
        last_applied: Some(LogPos {
            term: 2,
            index: CHECKPOINT_KEYS,
        }),
        membership: Bytes::from(
            codec::encode(&StoredMembership::new(Some(id(1, 1)), membership())).unwrap(),
        ),
        snapshot_id: "7-2-1000-test".into(),
    };
    Checkpoint::write(path, &meta, scan).unwrap()
}

/// Flips one bit of the byte at `offset`.
pub fn flip(path: &Path, offset: usize) {
    let mut data = std::fs::read(path).unwrap();
    data[offset] ^= 0x20;
    std::fs::write(path, data).unwrap();
}
