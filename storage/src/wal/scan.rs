//! Reading one segment's bytes record by record, and naming the damage in it.
//!
//! The one reader of the segment format: recovery replays what it yields into the index at
//! open, and `islab wal dump` prints it, so what the dump calls valid and damaged is exactly
//! what recovery would. A scan never stops at damage; the caller decides what damage means
//! (recovery refuses, cuts or skips it, the dump reports it and goes on):
//!
//! ```text
//! segment shorter than a header (or a bad header   -> TornTail at 0   (its creation was torn)
//!   and nothing after it), last segment
//! the same in any other segment                      -> Corrupt at 0
//! bad header, records after it                       -> BadHeader       (records still read)
//! bad record, nothing valid after it, last segment   -> TornTail        (never acknowledged)
//! bad record anywhere else                           -> Corrupt, resumed at the next record
//! ```
//!
//! Every segment but the last was fully synced before the next one was started, so only the
//! last one can end in a torn write.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::wal::record::{Decoded, Record, decode, find_next_record};
use crate::wal::segment::{HeaderError, SEGMENT_HEADER_LEN, decode_header, parse_segment_name};

/// What a segment holds at some offset.
#[derive(Debug)]
pub enum ScanItem {
    /// A valid record and its framed length.
    Record {
        offset: u64,
        len: usize,
        record: Record,
    },
    Damage(Damage),
}

/// Bytes that are not a valid record (or segment header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub kind: DamageKind,
    pub reason: String,
    /// Where the next valid record starts, if one follows in this segment.
    pub resumed_at: Option<u64>,
    /// Bytes from `offset` to `resumed_at` (or the end of the segment).
    pub bytes: u64,
}

/// How recovery sees a stretch of damage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageKind {
    /// The segment header is not this segment's; the records after it are still read.
    BadHeader(HeaderFault),
    /// Not a torn write: recovery refuses to start (or skips it when told to tolerate it).
    Corrupt,
    /// The unacknowledged end of the last segment: recovery cuts it.
    TornTail,
}

/// What is wrong with a segment header that is there in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderFault {
    /// A valid header of another segment (a file renamed or copied by hand).
    WrongSegment(u64),
    /// A format version this build does not read.
    Version(u32),
    /// Not a segment header, or its checksum does not match.
    Invalid(String),
}

impl DamageKind {
    /// The kind's name in `islab wal dump` output.
    pub fn name(&self) -> &'static str {
        match self {
            DamageKind::BadHeader(_) => "bad-header",
            DamageKind::Corrupt => "corrupt",
            DamageKind::TornTail => "torn-tail",
        }
    }
}

/// The records and damage of segment `seq`, in file order. `is_last`: whether this is the
/// newest segment (the only one that can have a torn tail).
pub struct SegmentScan {
    seq: u64,
    data: Bytes,
    is_last: bool,
    /// Where the next item starts; `None` before the header is checked.
    pos: Option<usize>,
}

impl SegmentScan {
    pub fn new(seq: u64, data: Bytes, is_last: bool) -> SegmentScan {
        SegmentScan {
            seq,
            data,
            is_last,
            pos: None,
        }
    }

    /// The length of the segment's bytes.
    pub fn segment_len(&self) -> usize {
        self.data.len()
    }

    /// The header's damage, if any; `None` when the records after it are to be read.
    fn header(&mut self) -> Option<Damage> {
        let len = self.data.len();
        self.pos = Some(SEGMENT_HEADER_LEN.min(len));
        let fault = match decode_header(&self.data) {
            Ok(found) if found == self.seq => return None,
            Ok(found) => HeaderFault::WrongSegment(found),
            Err(HeaderError::Version(v)) => HeaderFault::Version(v),
            Err(HeaderError::Invalid(reason)) => HeaderFault::Invalid(reason),
            Err(HeaderError::Short) => HeaderFault::Invalid(HeaderError::Short.to_string()),
        };
        if len <= SEGMENT_HEADER_LEN && matches!(fault, HeaderFault::Invalid(_)) {
            // Nothing but a (partial) header: a segment whose creation was torn.
            self.pos = Some(len);
            return Some(Damage {
                offset: 0,
                kind: if self.is_last {
                    DamageKind::TornTail
                } else {
                    DamageKind::Corrupt
                },
                reason: format!("{len} bytes and no valid segment header (its creation was torn)"),
                resumed_at: None,
                bytes: len as u64,
            });
        }
        let reason = match &fault {
            HeaderFault::WrongSegment(found) => format!("the header says segment {found}"),
            HeaderFault::Version(v) => format!("unsupported WAL format version {v}"),
            HeaderFault::Invalid(reason) => format!("bad segment header: {reason}"),
        };
        Some(Damage {
            offset: 0,
            kind: DamageKind::BadHeader(fault),
            reason,
            resumed_at: (len > SEGMENT_HEADER_LEN).then_some(SEGMENT_HEADER_LEN as u64),
            bytes: SEGMENT_HEADER_LEN as u64,
        })
    }
}

impl Iterator for SegmentScan {
    type Item = ScanItem;

    fn next(&mut self) -> Option<ScanItem> {
        let Some(pos) = self.pos else {
            return match self.header() {
                Some(damage) => Some(ScanItem::Damage(damage)),
                None => self.next(),
            };
        };
        if pos >= self.data.len() {
            return None;
        }
        let reason = match decode(&self.data.slice(pos..)) {
            Decoded::Record(record, len) => {
                self.pos = Some(pos + len);
                return Some(ScanItem::Record {
                    offset: pos as u64,
                    len,
                    record,
                });
            }
            Decoded::Incomplete => format!(
                "the record runs past the end of the file ({} bytes left)",
                self.data.len() - pos
            ),
            Decoded::Corrupt(reason) => reason,
        };
        let next = find_next_record(&self.data, pos);
        let end = next.unwrap_or(self.data.len());
        self.pos = Some(end);
        Some(ScanItem::Damage(Damage {
            offset: pos as u64,
            kind: if self.is_last && next.is_none() {
                DamageKind::TornTail
            } else {
                DamageKind::Corrupt
            },
            reason,
            resumed_at: next.map(|n| n as u64),
            bytes: (end - pos) as u64,
        }))
    }
}

/// The segment files in `dir` (file names only: `names`), in write order.
pub fn segment_seqs<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u64> {
    let mut seqs: Vec<u64> = names.into_iter().filter_map(parse_segment_name).collect();
    seqs.sort_unstable();
    seqs
}

/// The segment files of the WAL directory `dir`, in write order, read with plain `std::fs`
/// (for the offline tools, which must not open the [`crate::Wal`]: opening recovers, and
/// recovery cuts torn tails).
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(segment_seqs(names.iter().map(String::as_str))
        .into_iter()
        .map(|seq| (seq, crate::wal::segment::segment_path(dir, seq)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::segment::encode_header;

    fn segment(seq: u64, records: &[Record]) -> Vec<u8> {
        let mut h = encode_header(seq).to_vec();
        for r in records {
            r.encode(&mut h);
        }
        h
    }

    fn entry(index: u64) -> Record {
        Record::Entry {
            group: 1,
            term: 1,
            index,
            payload: Bytes::from(vec![index as u8; 20]),
        }
    }

    fn items(seq: u64, data: Vec<u8>, is_last: bool) -> (Vec<u64>, Vec<Damage>) {
        let (mut records, mut damage) = (Vec::new(), Vec::new());
        for item in SegmentScan::new(seq, Bytes::from(data), is_last) {
            match item {
                ScanItem::Record { offset, .. } => records.push(offset),
                ScanItem::Damage(d) => damage.push(d),
            }
        }
        (records, damage)
    }

    #[test]
    fn damage_in_the_middle_resumes_and_a_torn_tail_is_named() {
        let data = segment(3, &[entry(1), entry(2), entry(3)]);
        let (records, damage) = items(3, data.clone(), true);
        assert_eq!(records.len(), 3);
        assert!(damage.is_empty());
        let second = records[1] as usize;

        let mut flipped = data.clone();
        flipped[second + 12] ^= 0x40;
        let (after, damage) = items(3, flipped, true);
        assert_eq!(after, [records[0], records[2]]);
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].offset, second as u64);
        assert_eq!(damage[0].kind, DamageKind::Corrupt);
        assert_eq!(damage[0].resumed_at, Some(records[2]));
        assert_eq!(damage[0].bytes, records[2] - records[1]);

        let cut = data[..data.len() - 5].to_vec();
        let (kept, damage) = items(3, cut.clone(), true);
        assert_eq!(kept, records[..2]);
        assert_eq!(damage[0].kind, DamageKind::TornTail);
        assert!(
            damage[0].reason.contains("runs past the end"),
            "{}",
            damage[0].reason
        );
        let (_, damage) = items(3, cut, false);
        assert_eq!(damage[0].kind, DamageKind::Corrupt);
        assert_eq!(damage[0].resumed_at, None);
    }

    #[test]
    fn headers_are_checked() {
        let (records, damage) = items(4, segment(3, &[entry(1)]), false);
        assert_eq!(
            records.len(),
            1,
            "records after a wrong header are still read"
        );
        assert_eq!(
            damage[0].kind,
            DamageKind::BadHeader(HeaderFault::WrongSegment(3))
        );
        assert!(damage[0].reason.contains("says segment 3"));

        let mut garbage = segment(4, &[entry(1)]);
        garbage[0] ^= 1;
        let (records, damage) = items(4, garbage, true);
        assert_eq!(records.len(), 1);
        assert!(matches!(
            damage[0].kind,
            DamageKind::BadHeader(HeaderFault::Invalid(_))
        ));

        let mut version = segment(4, &[]);
        version[8] = 9;
        let crc = crc32c::crc32c(&version[0..24]);
        version[24..28].copy_from_slice(&crc.to_le_bytes());
        let (_, damage) = items(4, version, false);
        assert_eq!(
            damage[0].kind,
            DamageKind::BadHeader(HeaderFault::Version(9))
        );
    }

    #[test]
    fn a_torn_creation_is_a_torn_tail_only_in_the_last_segment() {
        for len in [0, 10, SEGMENT_HEADER_LEN] {
            let (records, damage) = items(4, vec![0; len], true);
            assert!(records.is_empty());
            assert_eq!(damage.len(), 1, "{len} bytes");
            assert_eq!(damage[0].kind, DamageKind::TornTail, "{len} bytes");
            assert_eq!(damage[0].bytes, len as u64);
            let (_, damage) = items(4, vec![0; len], false);
            assert_eq!(damage[0].kind, DamageKind::Corrupt, "{len} bytes");
        }
        let (records, damage) = items(4, segment(4, &[]), true);
        assert!(
            records.is_empty() && damage.is_empty(),
            "an empty segment is fine"
        );
    }

    #[test]
    fn segments_are_listed_in_write_order() {
        let names = [
            "00000000000000000010.log",
            "LOCK",
            "00000000000000000002.log",
            "x.log",
        ];
        assert_eq!(segment_seqs(names), [2, 10]);
    }
}
