//! Writes the seed corpus: a few valid encodings per target, made by the real encoders.
//!
//! `cargo run --example gen_corpus` from `fuzz/` (or `scripts/fuzz --seed`) rewrites
//! `fuzz/corpus/<target>/seed-*`; inputs the fuzzer saved next to them are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use islab_fuzz::{FIX_CRCS, WAL_HEADER, WAL_SPLIT, WAL_TOLERATE, scratch_dir, seed_requests};
use islab_raft::encoding::entry_to_record;
use islab_raft::{
    Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};
use islab_storage::{
    Checkpoint, CheckpointMeta, Command, LogPos, MemStore, Record, Request, codec,
    encode_segment_header,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };

    // wal_record: `mode | split u16 | segment body` (the target prepends the header).
    let mut body = Vec::new();
    for r in wal_records() {
        r.encode(&mut body);
    }
    let with = |mode: u8, split: u16, data: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(&split.to_le_bytes());
        v.extend_from_slice(data);
        v
    };
    write("wal_record", "records", &with(WAL_HEADER, 0, &body));
    let half = (body.len() / 2) as u16;
    write(
        "wal_record",
        "split",
        &with(WAL_HEADER | WAL_SPLIT | FIX_CRCS, half, &body),
    );
    let mut torn = body.clone();
    torn.truncate(body.len() - 3);
    write(
        "wal_record",
        "torn-tolerate",
        &with(WAL_HEADER | WAL_TOLERATE, 0, &torn),
    );
    let mut raw = encode_segment_header(1).to_vec();
    raw.extend_from_slice(&body);
    write("wal_record", "raw-segment", &with(0, 0, &raw));

    // checkpoint: `mode | chunk | file`.
    for (name, store) in checkpoint_stores() {
        let meta = CheckpointMeta {
            group: 1,
            last_applied: Some(LogPos { term: 2, index: 9 }),
            membership: Bytes::from(codec::encode(&membership()).unwrap()),
            snapshot_id: "2-9-seed".into(),
        };
        let path = scratch_dir().join("seed.ckp");
        let at = 100;
        Checkpoint::write(&path, &meta, store.begin_checkpoint(at).unwrap()).unwrap();
        let mut v = vec![0, 7];
        v.extend_from_slice(&std::fs::read(&path).unwrap());
        write("checkpoint", name, &v);
    }

    // raft_envelope: `kind | bytes`.
    let vote = Vote::new_committed(3, 1);
    let lid = |term, index| LogId {
        leader_id: islab_raft::CommittedLeaderId::new(term),
        index,
    };
    let entries = vec![
        Entry {
            log_id: lid(3, 5),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: lid(3, 6),
            payload: EntryPayload::Normal(seed_requests()[1][0].clone()),
        },
        Entry {
            log_id: lid(3, 7),
            payload: EntryPayload::Membership(membership().membership().clone()),
        },
    ];
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(lid(2, 4)),
        entries: entries.clone(),
        leader_commit: Some(lid(2, 4)),
    };
    let kinds: Vec<(u8, &str, Vec<u8>)> = vec![
        (0, "append", codec::encode(&append).unwrap()),
        (
            1,
            "vote-request",
            codec::encode(&VoteRequest::<TypeConfig>::new(vote, Some(lid(2, 4)))).unwrap(),
        ),
        (
            2,
            "transfer",
            codec::encode(&TransferLeaderRequest::<TypeConfig>::new(
                vote,
                2,
                Some(lid(3, 7)),
            ))
            .unwrap(),
        ),
        (3, "vote", codec::encode(&vote).unwrap()),
        (
            4,
            "snapshot-meta",
            codec::encode(&SnapshotMeta {
                last_log_id: Some(lid(3, 7)),
                last_membership: membership(),
            })
            .unwrap(),
        ),
        (
            5,
            "append-reply",
            codec::encode(&Ok::<_, String>(
                AppendEntriesResponse::<TypeConfig>::Success,
            ))
            .unwrap(),
        ),
        (
            6,
            "vote-reply",
            codec::encode(&Ok::<_, String>(VoteResponse::<TypeConfig>::new(
                vote,
                Some(lid(3, 7)),
                true,
            )))
            .unwrap(),
        ),
        (
            7,
            "snapshot-reply",
            codec::encode(&Ok::<_, String>(SnapshotResponse::<TypeConfig>::new(vote))).unwrap(),
        ),
        (
            8,
            "transfer-reply",
            codec::encode(&Err::<TransferLeaderResponse<TypeConfig>, _>(
                "refused".to_string(),
            ))
            .unwrap(),
        ),
        (10, "wal-vote", codec::encode(&vote).unwrap()),
        (
            11,
            "wal-committed",
            codec::encode(&Some(lid(3, 7))).unwrap(),
        ),
        (12, "membership", codec::encode(&membership()).unwrap()),
    ];
    for (kind, name, bytes) in kinds {
        let mut v = vec![kind];
        v.extend_from_slice(&bytes);
        write("raft_envelope", name, &v);
    }
    for (i, entry) in entries.iter().enumerate() {
        let record = entry_to_record(entry).unwrap();
        let mut v = vec![9];
        v.extend_from_slice(&record.term.to_le_bytes());
        v.extend_from_slice(&record.index.to_le_bytes());
        v.extend_from_slice(&record.payload);
        write("raft_envelope", &format!("entry-{i}"), &v);
    }

    // request: a `Vec<Request>`.
    for (i, requests) in seed_requests().iter().enumerate() {
        write(
            "request",
            &format!("requests-{i}"),
            &codec::encode::<Vec<Request>>(requests).unwrap(),
        );
    }
    let _ = std::fs::remove_dir_all(scratch_dir());
    println!("seed corpus written to {}", root.display());
}

fn membership() -> StoredMembership {
    let voters = BTreeSet::from([1u64, 2, 3]);
    let nodes: BTreeMap<u64, openraft::BasicNode> = [1u64, 2, 3, 4]
        .into_iter()
        .map(|id| (id, openraft::BasicNode::new(format!("10.0.0.{id}:7000"))))
        .collect();
    let config = Membership::new(vec![voters], nodes).unwrap();
    StoredMembership::new(
        Some(LogId {
            leader_id: islab_raft::CommittedLeaderId::new(2),
            index: 3,
        }),
        config,
    )
}

fn wal_records() -> Vec<Record> {
    let payload = |s: &'static str| Bytes::from_static(s.as_bytes());
    let mut v = Vec::new();
    for group in [0u64, 1, 300] {
        for index in 1..=4 {
            v.push(Record::Entry {
                group,
                term: 1 + index / 3,
                index,
                payload: payload("entry payload"),
            });
        }
        v.push(Record::Vote {
            group,
            data: payload("vote"),
        });
        v.push(Record::Committed {
            group,
            data: payload("committed"),
        });
    }
    v.push(Record::Truncate {
        group: 0,
        after: Some(2),
    });
    v.push(Record::Purge {
        group: 1,
        upto: LogPos { term: 1, index: 2 },
    });
    v.push(Record::Entry {
        group: 0,
        term: 2,
        index: 3,
        payload: payload("replaced"),
    });
    v
}

fn checkpoint_stores() -> Vec<(&'static str, Arc<MemStore>)> {
    let small = Arc::new(MemStore::new());
    for (i, req) in seed_requests().iter().flatten().enumerate() {
        small.apply_request(i as u64 + 1, req);
    }
    // Compressible values, so a block is stored lz4-compressed.
    let compressed = Arc::new(MemStore::new());
    for i in 0..20u64 {
        compressed.apply(
            i + 1,
            &Command::Put {
                key: Bytes::from(format!("key-{i:04}")),
                value: Bytes::from(vec![b'x'; 64]),
                expires_at: (i % 3 == 0).then_some(1_700_000_000_000 + i),
            },
        );
    }
    vec![
        ("empty", Arc::new(MemStore::new())),
        ("small", small),
        ("lz4", compressed),
    ]
}
