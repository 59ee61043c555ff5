//! Damaged segments: a torn last record is cut at every byte offset, a flipped byte in the
//! middle is refused with its file and offset, and tolerate-corruption mode skips it and says so.

mod common;

use std::path::{Path, PathBuf};

use common::{append_durable, entry, init_tracing};
use islab_storage::{Error, LogRecord, RecoveryMode, Wal, WalConfig, segment_name};

/// Writes `n` entries of group 1 into a fresh WAL; returns the segment holding them and the
/// offsets where each entry's frame starts (and the end of the last one).
fn write_log(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
    let (wal, _) = Wal::open(dir, WalConfig::default()).unwrap();
    for i in 1..=n {
        append_durable(&wal, 1, vec![entry(1, i, 1)]).unwrap();
    }
    drop(wal);
    let path = dir.join(segment_name(1));
    let data = std::fs::read(&path).unwrap();
    let mut offsets = Vec::new();
    let mut pos = islab_storage::SEGMENT_HEADER_LEN;
    while pos < data.len() {
        offsets.push(pos as u64);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    offsets.push(pos as u64);
    assert_eq!(offsets.len() as u64, n + 1);
    (path, offsets)
}

/// Removes every segment but the first (open creates a fresh one each time).
fn keep_only_first_segment(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy() != segment_name(1) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

fn entries(n: u64) -> Vec<LogRecord> {
    (1..=n).map(|i| entry(1, i, 1)).collect()
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset() {
    init_tracing();
    let pristine = tempfile::tempdir().unwrap();
    let (path, offsets) = write_log(pristine.path(), 5);
    let data = std::fs::read(&path).unwrap();
    let last_start = offsets[4] as usize;
    let end = offsets[5] as usize;
    for cut in last_start..end {
        for zero_fill in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut torn = data[..cut].to_vec();
            if zero_fill {
                // As if the file had been extended and the tail never written.
                torn.resize(end + 4096, 0);
            }
            std::fs::write(dir.path().join(segment_name(1)), &torn).unwrap();
            let (wal, report) = Wal::open(dir.path(), WalConfig::default())
                .unwrap_or_else(|e| panic!("cut at {cut} (zeros {zero_fill}): {e}"));
            assert_eq!(wal.read(1, 0..100).unwrap(), entries(4), "cut at {cut}");
            if cut > last_start || zero_fill {
                let torn = report.torn_tail.expect("torn tail reported");
                assert_eq!(torn.offset, last_start as u64);
            }
            drop(wal);
            // The cut is physical: the segment now ends at the last good record, and a second
            // open (with this segment no longer the last) is clean.
            assert_eq!(
                std::fs::metadata(dir.path().join(segment_name(1)))
                    .unwrap()
                    .len(),
                last_start as u64
            );
            let (wal, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
            assert_eq!(report.torn_tail, None);
            assert_eq!(wal.read(1, 0..100).unwrap(), entries(4));
        }
    }
}

#[test]
fn a_flipped_byte_mid_segment_is_refused_with_file_and_offset() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = write_log(dir.path(), 10);
    keep_only_first_segment(dir.path());
    let mut data = std::fs::read(&path).unwrap();
    let victim = offsets[4] as usize; // the 5th entry
    for byte in [victim + 2, victim + 6, victim + 12] {
        let mut bad = data.clone();
        bad[byte] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open(dir.path(), WalConfig::default()).unwrap_err();
        match &err {
            Error::Corrupt { file, offset, .. } => {
                assert_eq!(file, &path);
                assert_eq!(*offset, victim as u64, "byte {byte}");
            }
            other => panic!("byte {byte}: expected Corrupt, got {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains(&victim.to_string()));
        assert!(msg.contains("tolerate-corruption"), "{msg}");
        keep_only_first_segment(dir.path());
    }

    // Tolerant mode skips the record, reports it, and cuts the group's log at the hole.
    data[victim + 12] ^= 0x5a;
    std::fs::write(&path, &data).unwrap();
    let config = WalConfig {
        recovery: RecoveryMode::TolerateCorruption,
        ..Default::default()
    };
    let (wal, report) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].offset, victim as u64);
    assert_eq!(report.cut_groups, vec![(1, Some(4))]);
    assert_eq!(wal.read(1, 0..100).unwrap(), entries(4));
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_never_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = write_log(dir.path(), 3);
    // Open again so that segment 1 is no longer the last one.
    drop(Wal::open(dir.path(), WalConfig::default()).unwrap());
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..offsets[3] as usize - 1]).unwrap();
    let err = Wal::open(dir.path(), WalConfig::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { file, offset, .. } if *file == path && *offset == offsets[2]),
        "{err}"
    );
}

#[test]
fn a_segment_from_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_log(dir.path(), 1);
    let mut data = std::fs::read(&path).unwrap();
    data[8] = 99; // format version
    // Fix the header checksum so only the version is wrong.
    let crc = crc32c::crc32c(&data[0..24]);
    data[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &data).unwrap();
    let err = Wal::open(dir.path(), WalConfig::default()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { version: 99, .. }),
        "{err}"
    );
}

/// Found by the `wal_record` fuzz target: a (checksummed) entry at index u64::MAX made
/// recovery panic on `index + 1`. It is a bad record now, cut as a torn tail or refused.
#[test]
fn an_entry_at_index_u64_max_is_refused_not_a_panic() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut data = islab_storage::encode_segment_header(1).to_vec();
    let mut records = Vec::new();
    for index in [1, u64::MAX] {
        islab_storage::Record::Entry {
            group: 1,
            term: 1,
            index,
            payload: bytes::Bytes::from_static(b"x"),
        }
        .encode(&mut records);
    }
    data.extend_from_slice(&records);
    std::fs::write(dir.path().join(segment_name(1)), &data).unwrap();
    let (wal, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let torn = report
        .torn_tail
        .expect("the bad last record is a torn tail");
    assert!(torn.reason.contains("out of range"), "{}", torn.reason);
    assert_eq!(wal.log_state(1).last.map(|p| p.index), Some(1));
    drop(wal);

    // Followed by a valid record it is corruption in the middle: refused, naming the offset.
    let dir = tempfile::tempdir().unwrap();
    let mut data = islab_storage::encode_segment_header(1).to_vec();
    data.extend_from_slice(&records);
    islab_storage::Record::Vote {
        group: 1,
        data: bytes::Bytes::from_static(b"v"),
    }
    .encode(&mut data);
    std::fs::write(dir.path().join(segment_name(1)), &data).unwrap();
    let err = Wal::open(dir.path(), WalConfig::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("out of range")),
        "{err}"
    );
}
