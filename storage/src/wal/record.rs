//! WAL record framing: how one record looks on disk.
//!
//! ```text
//! | len u32 LE | crc32c u32 LE | kind u8 | body ... |
//!              `----- crc covers kind and body -----'
//! len = 1 + body length
//! ```
//!
//! Bodies start with the group id as a LEB128 varint, so the entries of many groups
//! interleave in one stream. An `Entry` costs 9 bytes of framing plus three varints (group,
//! term, index: typically 5–8 bytes) plus the opaque payload the Raft layer hands us.

use bytes::Bytes;

use crate::GroupId;
use crate::LogPos;

/// Framing bytes before the kind byte.
pub const HEADER_LEN: usize = 8;
/// No record may be larger than this; a length above it is corruption, not a big record.
pub const MAX_RECORD_LEN: usize = 256 << 20;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_VOTE: u8 = 4;
const KIND_COMMITTED: u8 = 5;

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A log entry of `group`.
    Entry {
        group: GroupId,
        term: u64,
        index: u64,
        payload: Bytes,
    },
    /// Remove the group's entries with index > `after` (all of them when `None`).
    Truncate { group: GroupId, after: Option<u64> },
    /// Remove the group's entries up to and including `upto`.
    Purge { group: GroupId, upto: LogPos },
    /// The group's vote (opaque, encoded by the Raft layer).
    Vote { group: GroupId, data: Bytes },
    /// The group's last committed log id (opaque).
    Committed { group: GroupId, data: Bytes },
}

impl Record {
    pub fn group(&self) -> GroupId {
        match self {
            Record::Entry { group, .. }
            | Record::Truncate { group, .. }
            | Record::Purge { group, .. }
            | Record::Vote { group, .. }
            | Record::Committed { group, .. } => *group,
        }
    }

    /// Appends the framed record to `buf`; returns the framed length.
    pub fn encode(&self, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        match self {
            Record::Entry {
                group,
                term,
                index,
                payload,
            } => {
                buf.push(KIND_ENTRY);
                put_varint(buf, *group);
                put_varint(buf, *term);
                put_varint(buf, *index);
                buf.extend_from_slice(payload);
            }
            Record::Truncate { group, after } => {
                buf.push(KIND_TRUNCATE);
                put_varint(buf, *group);
                put_varint(buf, after.map_or(0, |a| a + 1));
            }
            Record::Purge { group, upto } => {
                buf.push(KIND_PURGE);
                put_varint(buf, *group);
                put_varint(buf, upto.term);
                put_varint(buf, upto.index);
            }
            Record::Vote { group, data } => {
                buf.push(KIND_VOTE);
                put_varint(buf, *group);
                buf.extend_from_slice(data);
            }
            Record::Committed { group, data } => {
                buf.push(KIND_COMMITTED);
                put_varint(buf, *group);
                buf.extend_from_slice(data);
            }
        }
        let len = (buf.len() - start - HEADER_LEN) as u32;
        let crc = crc32c::crc32c(&buf[start + HEADER_LEN..]);
        buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        buf.len() - start
    }

    /// The framed length of an entry record, without encoding it.
    pub fn entry_frame_len(group: GroupId, term: u64, index: u64, payload_len: usize) -> usize {
        HEADER_LEN + 1 + varint_len(group) + varint_len(term) + varint_len(index) + payload_len
    }
}

/// What [`decode`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record and its framed length.
    Record(Record, usize),
    /// The buffer ends inside the record (a torn write, if this is the end of the log).
    Incomplete,
    /// Bytes that are not a valid record.
    Corrupt(String),
}

/// Decodes the record at the start of `buf`. `buf` is a [`Bytes`] so entry payloads are
/// slices of it rather than copies.
pub fn decode(buf: &Bytes) -> Decoded {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    if len == 0 {
        return Decoded::Corrupt("zero length".into());
    }
    if len > MAX_RECORD_LEN {
        return Decoded::Corrupt(format!("length {len} above the maximum {MAX_RECORD_LEN}"));
    }
    if buf.len() < HEADER_LEN + len {
        return Decoded::Incomplete;
    }
    let body = buf.slice(HEADER_LEN..HEADER_LEN + len);
    let actual = crc32c::crc32c(&body);
    if actual != crc {
        return Decoded::Corrupt(format!(
            "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        ));
    }
    match decode_body(&body) {
        // Recovery and a group's log index compute `index + 1`; no real log gets that far.
        Some(
            Record::Entry {
                index: u64::MAX, ..
            }
            | Record::Purge {
                upto: LogPos {
                    index: u64::MAX, ..
                },
                ..
            },
        ) => Decoded::Corrupt(format!("log index {} is out of range", u64::MAX)),
        Some(record) => Decoded::Record(record, HEADER_LEN + len),
        None => Decoded::Corrupt(format!("undecodable record of kind {}", body[0])),
    }
}

/// The offset of the first valid record after `pos`, if any. Used only on damage: by recovery
/// to tell a torn tail (nothing valid after it) from corruption in the middle, and by
/// `islab wal dump` to resume. Cheap checks on length and kind come first, so the checksum runs
/// rarely.
pub fn find_next_record(data: &Bytes, pos: usize) -> Option<usize> {
    let mut p = pos + 1;
    while p + HEADER_LEN < data.len() {
        let len = u32::from_le_bytes(data[p..p + 4].try_into().unwrap()) as usize;
        let kind = data[p + HEADER_LEN];
        if len > 0
            && len <= MAX_RECORD_LEN
            && p + HEADER_LEN + len <= data.len()
            && (KIND_ENTRY..=KIND_COMMITTED).contains(&kind)
            && let Decoded::Record(..) = decode(&data.slice(p..p + HEADER_LEN + len))
        {
            return Some(p);
        }
        p += 1;
    }
    None
}

fn decode_body(body: &Bytes) -> Option<Record> {
    let kind = body[0];
    let mut pos = 1;
    let group = get_varint(body, &mut pos)?;
    let record = match kind {
        KIND_ENTRY => {
            let term = get_varint(body, &mut pos)?;
            let index = get_varint(body, &mut pos)?;
            Record::Entry {
                group,
                term,
                index,
                payload: body.slice(pos..),
            }
        }
        KIND_TRUNCATE => {
            let after = get_varint(body, &mut pos)?;
            Record::Truncate {
                group,
                after: after.checked_sub(1),
            }
        }
        KIND_PURGE => {
            let term = get_varint(body, &mut pos)?;
            let index = get_varint(body, &mut pos)?;
            Record::Purge {
                group,
                upto: LogPos { term, index },
            }
        }
        KIND_VOTE => Record::Vote {
            group,
            data: body.slice(pos..),
        },
        KIND_COMMITTED => Record::Committed {
            group,
            data: body.slice(pos..),
        },
        _ => return None,
    };
    if matches!(kind, KIND_TRUNCATE | KIND_PURGE) && pos != body.len() {
        return None;
    }
    Some(record)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Entry {
                group: 3,
                term: 2,
                index: 1 << 40,
                payload: Bytes::from_static(b"hello"),
            },
            Record::Truncate {
                group: 0,
                after: None,
            },
            Record::Truncate {
                group: 9,
                after: Some(0),
            },
            Record::Purge {
                group: u64::MAX,
                upto: LogPos { term: 1, index: 7 },
            },
            Record::Vote {
                group: 1,
                data: Bytes::from_static(b"v"),
            },
            Record::Committed {
                group: 1,
                data: Bytes::new(),
            },
        ]
    }

    #[test]
    fn round_trip() {
        for r in all_kinds() {
            let mut buf = Vec::new();
            let n = r.encode(&mut buf);
            assert_eq!(n, buf.len());
            if let Record::Entry {
                group,
                term,
                index,
                payload,
            } = &r
            {
                assert_eq!(
                    n,
                    Record::entry_frame_len(*group, *term, *index, payload.len())
                );
            }
            assert_eq!(decode(&Bytes::from(buf)), Decoded::Record(r, n));
        }
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flip_is_caught() {
        let mut buf = Vec::new();
        all_kinds()[0].encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(
                decode(&Bytes::copy_from_slice(&buf[..cut])),
                Decoded::Incomplete
            );
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                !matches!(decode(&Bytes::from(bad)), Decoded::Record(..)),
                "flip at {i}"
            );
        }
    }

    /// Found by the `wal_record` fuzz target: an entry or purge at index u64::MAX (checksum
    /// and all) made recovery overflow computing the next index.
    #[test]
    fn index_u64_max_is_corrupt() {
        for r in [
            Record::Entry {
                group: 1,
                term: 1,
                index: u64::MAX,
                payload: Bytes::new(),
            },
            Record::Purge {
                group: 1,
                upto: LogPos {
                    term: 1,
                    index: u64::MAX,
                },
            },
        ] {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            match decode(&Bytes::from(buf)) {
                Decoded::Corrupt(reason) => assert!(reason.contains("out of range"), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn varint_lengths() {
        for v in [0, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(get_varint(&buf, &mut pos), Some(v));
        }
    }
}
