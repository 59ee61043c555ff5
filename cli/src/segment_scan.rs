//! Reading WAL segments as plain files, record by record, for the offline tools.
//!
//! This never opens the [`islab_storage::Wal`]: opening recovers, and recovery cuts torn tails
//! and starts a new segment. Here every segment is read whole and every record decoded with
//! storage's own framing code, so what the dump calls valid is exactly what recovery would.
//! Damage is classified the way recovery sees it:
//!
//! ```text
//! bad record, nothing valid after it, last segment  -> TornTail  (recovery cuts it)
//! bad record anywhere else                           -> Corrupt   (recovery refuses to start)
//! bad segment header                                 -> BadHeader (records after it still checked)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use islab_storage::{
    Decoded, Record, SEGMENT_HEADER_LEN, decode_record, decode_segment_header, find_next_record,
    parse_segment_name,
};

/// What a segment holds at some offset.
#[derive(Debug)]
pub enum Item {
    Record {
        offset: u64,
        len: usize,
        record: Record,
    },
    Damage(Damage),
}

/// Bytes that are not a valid record (or header).
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DamageKind {
    BadHeader,
    Corrupt,
    TornTail,
}

impl DamageKind {
    pub fn name(self) -> &'static str {
        match self {
            DamageKind::BadHeader => "bad-header",
            DamageKind::Corrupt => "corrupt",
            DamageKind::TornTail => "torn-tail",
        }
    }
}

/// The directory holding the segments: `dir/wal` if there is one (a data directory), else
/// `dir` itself.
pub fn wal_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("wal");
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// The segment files of `dir`, in write order (sequence, path).
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading WAL directory {}", dir.display()))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading WAL directory {}", dir.display()))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            segments.push((seq, entry.path()));
        }
    }
    if segments.is_empty() {
        bail!(
            "no WAL segments (files named like 00000000000000000001.log) in {}",
            dir.display()
        );
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Checks the header of segment `seq` and decodes its records in order, calling `f` with each
/// record and each stretch of damage. `is_last`: whether this is the newest segment (the only
/// one that can have a torn tail).
pub fn scan(seq: u64, data: &Bytes, is_last: bool, mut f: impl FnMut(Item)) {
    if data.len() < SEGMENT_HEADER_LEN {
        f(Item::Damage(Damage {
            offset: 0,
            kind: if is_last {
                DamageKind::TornTail
            } else {
                DamageKind::Corrupt
            },
            reason: format!(
                "{} bytes is shorter than a segment header (its creation was torn)",
                data.len()
            ),
            resumed_at: None,
            bytes: data.len() as u64,
        }));
        return;
    }
    let bad_header = match decode_segment_header(data) {
        Ok(found) if found == seq => None,
        Ok(found) => Some(format!("the header says segment {found}")),
        Err(e) => Some(format!("bad segment header: {e}")),
    };
    if let Some(reason) = bad_header {
        f(Item::Damage(Damage {
            offset: 0,
            kind: DamageKind::BadHeader,
            reason: format!("{reason}; checking the records after it anyway"),
            resumed_at: Some(SEGMENT_HEADER_LEN as u64),
            bytes: SEGMENT_HEADER_LEN as u64,
        }));
    }

    let mut pos = SEGMENT_HEADER_LEN;
    while pos < data.len() {
        let reason = match decode_record(&data.slice(pos..)) {
            Decoded::Record(record, len) => {
                f(Item::Record {
                    offset: pos as u64,
                    len,
                    record,
                });
                pos += len;
                continue;
            }
            Decoded::Incomplete => format!(
                "the record runs past the end of the file ({} bytes left)",
                data.len() - pos
            ),
            Decoded::Corrupt(reason) => reason,
        };
        let next = find_next_record(data, pos);
        let end = next.unwrap_or(data.len());
        f(Item::Damage(Damage {
            offset: pos as u64,
            kind: if is_last && next.is_none() {
                DamageKind::TornTail
            } else {
                DamageKind::Corrupt
            },
            reason,
            resumed_at: next.map(|n| n as u64),
            bytes: (end - pos) as u64,
        }));
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u64, records: &[Record]) -> Vec<u8> {
        let mut h = islab_storage::encode_segment_header(seq).to_vec();
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
        scan(seq, &Bytes::from(data), is_last, |item| match item {
            Item::Record { offset, .. } => records.push(offset),
            Item::Damage(d) => damage.push(d),
        });
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

        let cut = data[..data.len() - 5].to_vec();
        let (_, damage) = items(3, cut.clone(), true);
        assert_eq!(damage[0].kind, DamageKind::TornTail);
        let (_, damage) = items(3, cut, false);
        assert_eq!(damage[0].kind, DamageKind::Corrupt);
    }

    #[test]
    fn headers_are_checked() {
        let (records, damage) = items(4, segment(3, &[entry(1)]), false);
        assert_eq!(records.len(), 1);
        assert_eq!(damage[0].kind, DamageKind::BadHeader);
        assert!(damage[0].reason.contains("says segment 3"));
        let (_, damage) = items(4, vec![0; 10], true);
        assert_eq!(damage[0].kind, DamageKind::TornTail);
    }
}
