//! The Raft transport's payloads and the Raft layer's WAL payloads, decoded from bytes.
//!
//! Input: `kind u8 | bytes`. `kind` picks what the bytes are decoded as: a peer's request as
//! the node's transport service decodes it (`codec::decode` of openraft's messages), a reply as
//! the sending side decodes it (`Result<Response, String>`), the snapshot header's vote and
//! meta, or one of `islab_raft::encoding`'s decoders (log entry payload, vote, committed log
//! id, membership). Decoding must return `Ok` or `Err`, never panic; what decodes must display,
//! and encode to bytes that decode to the same value.
#![no_main]

use std::fmt::{Debug, Display};

use bytes::Bytes;
use islab_raft::encoding::{
    decode_committed, decode_membership, decode_vote, entry_to_record, record_to_entry,
};
use islab_raft::{SnapshotMeta, TypeConfig, Vote};
use islab_storage::{LogRecord, codec};
use libfuzzer_sys::fuzz_target;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

type Reply<T> = Result<T, String>;

fuzz_target!(|input: &[u8]| {
    let Some((&kind, bytes)) = input.split_first() else {
        return;
    };
    match kind % 13 {
        0 => shown::<AppendEntriesRequest<TypeConfig>>(bytes),
        1 => shown::<VoteRequest<TypeConfig>>(bytes),
        2 => shown::<TransferLeaderRequest<TypeConfig>>(bytes),
        3 => shown::<Vote>(bytes),
        4 => shown::<SnapshotMeta>(bytes),
        5 => debugged::<Reply<AppendEntriesResponse<TypeConfig>>>(bytes),
        6 => debugged::<Reply<VoteResponse<TypeConfig>>>(bytes),
        7 => debugged::<Reply<SnapshotResponse<TypeConfig>>>(bytes),
        8 => debugged::<Reply<TransferLeaderResponse<TypeConfig>>>(bytes),
        9 => {
            // A WAL entry's payload; its position comes from the record header.
            let (term, index) = match bytes.get(..16) {
                Some(h) => (
                    u64::from_le_bytes(h[..8].try_into().unwrap()),
                    u64::from_le_bytes(h[8..].try_into().unwrap()),
                ),
                None => (1, 1),
            };
            let record = LogRecord {
                term,
                index,
                payload: Bytes::copy_from_slice(bytes.get(16..).unwrap_or(bytes)),
            };
            if let Ok(entry) = record_to_entry(&record) {
                let _ = format!("{entry} {entry:?}");
                let again = entry_to_record(&entry).expect("a decoded entry encodes");
                assert_eq!((again.term, again.index), (term, index));
                assert_eq!(record_to_entry(&again).unwrap(), entry);
            }
        }
        10 => {
            if let Ok(vote) = decode_vote(bytes) {
                let _ = format!("{vote} {vote:?}");
                round_trip(&vote);
            }
        }
        11 => {
            if let Ok(committed) = decode_committed(bytes) {
                let _ = format!("{committed:?}");
                round_trip(&committed);
            }
        }
        _ => {
            if let Ok(membership) = decode_membership(bytes) {
                let _ = format!("{membership} {membership:?}");
                let _ = membership.membership().voter_ids().count();
                let _ = membership.membership().learner_ids().count();
                round_trip(&membership);
            }
        }
    }
});

/// Decodes a message the node logs with `%`.
fn shown<T: Serialize + DeserializeOwned + Display + Debug>(bytes: &[u8]) {
    if let Ok(v) = codec::decode::<T>(bytes) {
        let _ = format!("{v} {v:?}");
        round_trip(&v);
    }
}

fn debugged<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) {
    if let Ok(v) = codec::decode::<T>(bytes) {
        let _ = format!("{v:?}");
        round_trip(&v);
    }
}

/// What decoded encodes, and its encoding decodes to the same encoding again.
fn round_trip<T: Serialize + DeserializeOwned>(v: &T) {
    let once = codec::encode(v).expect("a decoded value encodes");
    let back: T = codec::decode(&once).expect("an encoded value decodes");
    assert_eq!(
        codec::encode(&back).unwrap(),
        once,
        "round trip changed the value"
    );
}
