//! WAL records and recovery.
//!
//! Input: `mode u8 | split u16 LE | bytes`. The bytes are decoded record by record
//! (`decode_record`, resuming with `find_next_record` after damage), every record found must
//! re-encode to a record that decodes the same; `SegmentScan` (the reader recovery and the dump
//! share) must account for every byte of each segment; then the bytes become one or two
//! segment files on a simulated disk and `Wal::open` recovers them: it must return `Ok` or `Err`, never panic,
//! and a WAL it opened must read back and open again to the same state.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use islab_fuzz::{FIX_CRCS, WAL_HEADER, WAL_SPLIT, WAL_TOLERATE, fix_wal_crcs};
use islab_storage::sim::SimFs;
use islab_storage::{
    DamageKind, Decoded, FileSystem, Record, RecoveryMode, SEGMENT_HEADER_LEN, ScanItem,
    SegmentScan, Wal, WalConfig, decode_record, decode_segment_header, encode_segment_header,
    find_next_record, segment_name,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let mode = input[0];
    let split = u16::from_le_bytes([input[1], input[2]]) as usize;
    let mut data = input[3..].to_vec();
    if mode & FIX_CRCS != 0 {
        fix_wal_crcs(&mut data);
    }
    let data = Bytes::from(data);
    records(&data);
    let _ = decode_segment_header(&data);
    scan(1, &data, true);
    scan(1, &data, false);

    let segments: Vec<Vec<u8>> = if mode & WAL_SPLIT != 0 {
        let at = split.min(data.len());
        vec![data[..at].to_vec(), data[at..].to_vec()]
    } else {
        vec![data.to_vec()]
    };
    let fs = SimFs::new();
    let dir = Path::new("/wal");
    fs.create_dir_all(dir).unwrap();
    let count = segments.len();
    for (i, body) in segments.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let mut file = Vec::new();
        if mode & WAL_HEADER != 0 {
            file.extend_from_slice(&encode_segment_header(seq));
        }
        file.extend_from_slice(&body);
        scan(seq, &Bytes::from(file.clone()), i + 1 == count);
        let f = fs.create(&dir.join(segment_name(seq))).unwrap();
        f.write_at(&file, 0).unwrap();
        f.sync_data().unwrap();
    }
    fs.sync_dir(dir).unwrap();
    let config = WalConfig {
        recovery: if mode & WAL_TOLERATE != 0 {
            RecoveryMode::TolerateCorruption
        } else {
            RecoveryMode::TolerateTailCorruption
        },
        ..WalConfig::default()
    };
    let Ok((wal, _report)) = Wal::open_with(dir, config.clone(), Arc::new(fs.clone())) else {
        return;
    };
    let before = state(&wal);
    wal.shutdown().unwrap();
    drop(wal);
    let (wal, _) =
        Wal::open_with(dir, config, Arc::new(fs)).expect("a WAL that opened once must open again");
    assert_eq!(state(&wal), before, "reopening changed the WAL");
    wal.shutdown().unwrap();
});

/// Decodes `data` record by record; checks that each record re-encodes faithfully.
fn records(data: &Bytes) {
    let mut pos = 0;
    while pos < data.len() {
        match decode_record(&data.slice(pos..)) {
            Decoded::Record(record, len) => {
                assert!(len > 8 && len <= data.len() - pos, "bad length {len}");
                let mut buf = Vec::new();
                let n = record.encode(&mut buf);
                if let Record::Entry {
                    group,
                    term,
                    index,
                    payload,
                } = &record
                {
                    assert_eq!(
                        n,
                        Record::entry_frame_len(*group, *term, *index, payload.len())
                    );
                }
                assert_eq!(decode_record(&Bytes::from(buf)), Decoded::Record(record, n));
                pos += len;
            }
            Decoded::Incomplete => return,
            Decoded::Corrupt(_) => match find_next_record(data, pos) {
                Some(next) => {
                    assert!(next > pos);
                    pos = next;
                }
                None => return,
            },
        }
    }
}

/// Scans one segment file with storage's `SegmentScan` (the reader recovery and `islab wal
/// dump` share) and checks what it yields tiles the file: every item starts where the one
/// before ended, damage says where it resumed, a torn tail is only the end of the last
/// segment, and nothing is left unread.
fn scan(seq: u64, file: &Bytes, is_last: bool) {
    let len = file.len() as u64;
    // A valid header is a full one: records start after it. Damage at 0 is the header's.
    let mut end = (SEGMENT_HEADER_LEN as u64).min(len);
    let mut torn = false;
    for item in SegmentScan::new(seq, file.clone(), is_last) {
        assert!(!torn, "an item after a torn tail");
        match item {
            ScanItem::Record { offset, len: n, .. } => {
                assert_eq!(offset, end, "a record not where the last item ended");
                end = offset + n as u64;
            }
            ScanItem::Damage(d) => {
                if d.offset == 0 {
                    end = 0;
                }
                assert_eq!(d.offset, end, "damage not where the last item ended: {d:?}");
                assert!(d.bytes > 0 || len == 0, "empty damage: {d:?}");
                end = d.offset + d.bytes;
                match d.resumed_at {
                    Some(at) => assert_eq!(at, end, "{d:?}"),
                    None => assert_eq!(end, len, "damage without a resume point ends early: {d:?}"),
                }
                if d.kind == DamageKind::TornTail {
                    assert!(
                        is_last,
                        "a torn tail in a segment that is not the last: {d:?}"
                    );
                    torn = true;
                }
            }
        }
        assert!(end <= len, "an item past the end of the file");
    }
    assert_eq!(end, len, "the scan left bytes unread");
}

/// Everything the WAL holds, as its public API shows it.
fn state(wal: &Wal) -> Vec<String> {
    wal.groups()
        .into_iter()
        .map(|g| {
            let log = wal.log_state(g);
            let first = log.purged.map_or(0, |p| p.index.saturating_add(1));
            let end = log.last.map_or(0, |l| l.index.saturating_add(1));
            let entries = wal
                .read(g, first..end)
                .map(|records| {
                    records
                        .iter()
                        .map(|r| (r.term, r.index, r.payload.len()))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string());
            format!(
                "group {g}: {log:?} vote {:?} committed {:?} entries {entries:?}",
                wal.vote(g),
                wal.committed(g)
            )
        })
        .collect()
}
