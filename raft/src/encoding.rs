//! How openraft values become the opaque bytes and `(term, index)` pairs storage keeps.
//!
//! The storage engine never sees an openraft type: a log entry is a [`LogRecord`] whose
//! payload is the bincode of the entry's [`EntryPayload`], a vote or committed log id is an
//! opaque blob, and a checkpoint carries its membership as one. Everything passes through
//! `islab_storage::codec`, so the byte format has one owner. Because the leader id is
//! openraft's standard one, a log id maps to [`LogPos`] and back without loss.

use bytes::Bytes;
use islab_storage::codec;
use islab_storage::{LogPos, LogRecord};

use crate::error::Error;
use crate::type_config::{CommittedLeaderId, Entry, EntryPayload, LogId, StoredMembership, Vote};

/// The storage position of a log id.
pub(crate) fn log_pos(log_id: &LogId) -> LogPos {
    LogPos {
        term: log_id.leader_id.term,
        index: log_id.index,
    }
}

/// The log id at a storage position.
pub(crate) fn log_id(pos: LogPos) -> LogId {
    LogId {
        leader_id: CommittedLeaderId::new(pos.term),
        index: pos.index,
    }
}

/// Encodes an entry as the WAL record that stores it.
pub fn entry_to_record(entry: &Entry) -> Result<LogRecord, Error> {
    Ok(LogRecord {
        term: entry.log_id.leader_id.term,
        index: entry.log_id.index,
        payload: Bytes::from(codec::encode(&entry.payload)?),
    })
}

/// Decodes a WAL record back into the entry openraft appended.
pub fn record_to_entry(record: &LogRecord) -> Result<Entry, Error> {
    let payload = decode_entry_payload(&record.payload)?;
    Ok(Entry {
        log_id: log_id(LogPos {
            term: record.term,
            index: record.index,
        }),
        payload,
    })
}

/// Decodes the payload of an entry record (what `islab wal dump` shows for each entry).
pub fn decode_entry_payload(bytes: &[u8]) -> Result<EntryPayload, Error> {
    Ok(codec::decode(bytes)?)
}

/// Encodes a vote as the blob the WAL keeps for it.
pub(crate) fn encode_vote(vote: &Vote) -> Result<Bytes, Error> {
    Ok(Bytes::from(codec::encode(vote)?))
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, Error> {
    Ok(codec::decode(bytes)?)
}

/// `None` is stored too (as its encoding), so "committed nothing" survives a restart.
pub(crate) fn encode_committed(committed: &Option<LogId>) -> Result<Bytes, Error> {
    Ok(Bytes::from(codec::encode(committed)?))
}

pub fn decode_committed(bytes: &[u8]) -> Result<Option<LogId>, Error> {
    Ok(codec::decode(bytes)?)
}

pub(crate) fn encode_membership(membership: &StoredMembership) -> Result<Bytes, Error> {
    Ok(Bytes::from(codec::encode(membership)?))
}

pub fn decode_membership(bytes: &[u8]) -> Result<StoredMembership, Error> {
    Ok(codec::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use islab_storage::Command;

    use super::*;
    use crate::type_config::Membership;

    fn id(term: u64, index: u64) -> LogId {
        log_id(LogPos { term, index })
    }

    #[test]
    fn log_ids_map_to_positions_and_back() {
        let lid = id(7, 42);
        assert_eq!(log_pos(&lid), LogPos { term: 7, index: 42 });
        assert_eq!(log_id(log_pos(&lid)), lid);
    }

    #[test]
    fn every_payload_kind_round_trips() {
        let voters = BTreeSet::from([1u64, 2, 3]);
        let payloads = [
            EntryPayload::Blank,
            EntryPayload::Normal(islab_storage::Request::new(Command::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                expires_at: Some(9),
            })),
            EntryPayload::Membership(Membership::new_with_defaults(vec![voters], [])),
        ];
        for (i, payload) in payloads.into_iter().enumerate() {
            let entry = Entry {
                log_id: id(3, i as u64 + 1),
                payload,
            };
            let record = entry_to_record(&entry).unwrap();
            assert_eq!((record.term, record.index), (3, i as u64 + 1));
            assert_eq!(record_to_entry(&record).unwrap(), entry);
        }
    }

    #[test]
    fn votes_and_committed_round_trip() {
        let vote = Vote::new_committed(5, 2);
        assert_eq!(decode_vote(&encode_vote(&vote).unwrap()).unwrap(), vote);
        for committed in [None, Some(id(4, 10))] {
            let bytes = encode_committed(&committed).unwrap();
            assert_eq!(decode_committed(&bytes).unwrap(), committed);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let record = LogRecord {
            term: 1,
            index: 1,
            payload: Bytes::from_static(&[0xff, 0xff, 0xff]),
        };
        assert!(record_to_entry(&record).is_err());
        assert!(decode_vote(&[]).is_err());
    }
}
