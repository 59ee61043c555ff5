//! WAL behaviour through its public API on the real file system: many groups in one log,
//! reopen, truncate and purge as records, vote and committed, rotation and segment GC, reads
//! from disk after the cache is gone, and contiguity errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{append_durable, entry, init_tracing, payload};
use islab_storage::{Error, LogPos, LogRecord, Wal, WalConfig};

fn small_segments() -> WalConfig {
    WalConfig {
        segment_size: 8 << 10,
        cache_bytes: 4 << 10,
        ..Default::default()
    }
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn groups_interleave_and_survive_reopen() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, report) = Wal::open(dir.path(), small_segments()).unwrap();
        assert_eq!(report.entries, 0);
        tracing::info!("--- interleave 3 groups, 300 entries each, one at a time");
        for i in 1..=300 {
            for g in [1, 2, 7] {
                append_durable(&wal, g, vec![entry(g, i, 1)]).unwrap();
            }
        }
        assert!(wal.stats().segments > 1, "small segments must have rotated");
        assert_eq!(wal.read(2, 1..301).unwrap().len(), 300);
    }
    tracing::info!("--- reopen: every entry bit-exact");
    let (wal, report) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(report.entries, 900);
    assert_eq!(report.torn_tail, None);
    for g in [1, 2, 7] {
        let got = wal.read(g, 0..1000).unwrap();
        let want: Vec<LogRecord> = (1..=300).map(|i| entry(g, i, 1)).collect();
        assert_eq!(got, want, "group {g}");
        assert_eq!(
            wal.log_state(g).last,
            Some(LogPos {
                term: 1,
                index: 300
            })
        );
    }
    assert_eq!(wal.groups(), vec![1, 2, 7]);
}

#[test]
fn truncate_purge_vote_committed_persist_through_gc() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
        append_durable(&wal, 1, (1..=100).map(|i| entry(1, i, 1)).collect()).unwrap();
        append_durable(&wal, 2, (1..=100).map(|i| entry(2, i, 1)).collect()).unwrap();
        tracing::info!("--- truncate group 1 after 60, overwrite 61.. with term 2");
        wal.truncate_after(1, Some(60)).unwrap();
        assert_eq!(wal.log_state(1).last.unwrap().index, 60);
        append_durable(&wal, 1, (61..=80).map(|i| entry(1, i, 2)).collect()).unwrap();
        tracing::info!("--- purge both groups past most of their entries");
        wal.purge(1, LogPos { term: 2, index: 70 }).unwrap();
        wal.purge(
            2,
            LogPos {
                term: 1,
                index: 100,
            },
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        wal.save_vote(1, Bytes::from_static(b"vote-1"), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
        rx.recv().unwrap().unwrap();
        wal.save_committed(1, Bytes::from_static(b"c-75")).unwrap();
        wal.save_committed(2, Bytes::from_static(b"c-100")).unwrap();
        tracing::info!("--- keep writing so segments rotate and old ones are collected");
        for i in 81..=400 {
            append_durable(&wal, 1, vec![entry(1, i, 2)]).unwrap();
        }
        wal.purge(
            1,
            LogPos {
                term: 2,
                index: 390,
            },
        )
        .unwrap();
        append_durable(&wal, 1, vec![entry(1, 401, 2)]).unwrap();
        wal.flush().unwrap();
        let stats = wal.stats();
        assert!(stats.segments <= 3, "old segments not collected: {stats:?}");
    }
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.vote(1).as_deref(), Some(&b"vote-1"[..]));
    assert_eq!(wal.committed(1).as_deref(), Some(&b"c-75"[..]));
    assert_eq!(wal.committed(2).as_deref(), Some(&b"c-100"[..]));
    let s1 = wal.log_state(1);
    assert_eq!(
        s1.purged,
        Some(LogPos {
            term: 2,
            index: 390
        })
    );
    assert_eq!(
        s1.last,
        Some(LogPos {
            term: 2,
            index: 401
        })
    );
    assert_eq!(
        wal.read(1, 0..1000).unwrap(),
        (391..=401).map(|i| entry(1, i, 2)).collect::<Vec<_>>()
    );
    let s2 = wal.log_state(2);
    assert_eq!(
        s2.purged,
        Some(LogPos {
            term: 1,
            index: 100
        })
    );
    assert_eq!(
        s2.last, s2.purged,
        "an empty log reports its purge point as last"
    );
    assert!(files_in(dir.path()) <= 4);
}

#[test]
fn reads_come_from_disk_once_the_cache_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        cache_bytes: 1024,
        ..Default::default()
    };
    let (wal, _) = Wal::open(dir.path(), config).unwrap();
    append_durable(&wal, 5, (0..500).map(|i| entry(5, i, 3)).collect()).unwrap();
    append_durable(&wal, 5, vec![entry(5, 500, 3)]).unwrap();
    assert_eq!(
        wal.read(5, 0..501).unwrap(),
        (0..=500).map(|i| entry(5, i, 3)).collect::<Vec<_>>()
    );
    assert_eq!(wal.read(5, 10..12).unwrap().len(), 2);
    assert_eq!(wal.read(5, 600..700).unwrap(), vec![]);
    assert_eq!(wal.read(9, 0..10).unwrap(), vec![]);
}

#[test]
fn appends_must_continue_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    append_durable(&wal, 1, vec![entry(1, 0, 0), entry(1, 1, 1)]).unwrap();
    let gap = wal.append(1, vec![entry(1, 5, 1)], |_| {}).unwrap_err();
    assert!(
        matches!(
            gap,
            Error::NotContiguous {
                group: 1,
                got: 5,
                last: Some(1)
            }
        ),
        "{gap}"
    );
    let inner_gap = wal
        .append(1, vec![entry(1, 2, 1), entry(1, 4, 1)], |_| {})
        .unwrap_err();
    assert!(matches!(inner_gap, Error::NotContiguous { got: 4, .. }));
    assert_eq!(
        wal.log_state(1).last.unwrap().index,
        1,
        "a refused append changes nothing"
    );
    wal.purge(1, LogPos { term: 1, index: 10 }).unwrap();
    assert!(wal.append(1, vec![entry(1, 2, 1)], |_| {}).is_err());
    append_durable(&wal, 1, vec![entry(1, 11, 2)]).unwrap();
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|g| {
            let wal = wal.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                for i in 1..=200 {
                    append_durable(&wal, g, vec![entry(g, i, 1)]).unwrap();
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(acked.load(Ordering::Relaxed), 1600);
    let stats = wal.stats();
    assert_eq!(stats.entries_appended, 1600);
    assert!(stats.fsyncs >= 1 && stats.fsyncs <= 1600, "{stats:?}");
    for g in 0..8 {
        assert_eq!(
            wal.read(g, 1..201).unwrap()[199].payload,
            payload(g, 200, 1)
        );
    }
}

#[test]
fn shutdown_refuses_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let other = wal.clone();
    append_durable(&wal, 1, vec![entry(1, 1, 1)]).unwrap();
    wal.shutdown().unwrap();
    assert!(matches!(
        other.append(1, vec![entry(1, 2, 1)], |_| {}),
        Err(Error::Shutdown)
    ));
    drop((wal, other));
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(wal.read(1, 0..10).unwrap(), vec![entry(1, 1, 1)]);
}

#[test]
fn async_mode_acknowledges_and_still_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        durability: islab_storage::Durability::Async,
        ..Default::default()
    };
    let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
    for i in 1..=50 {
        append_durable(&wal, 1, vec![entry(1, i, 1)]).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while wal.stats().fsyncs == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "async mode never fsynced"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(wal.read(1, 0..100).unwrap().len(), 50);
}
