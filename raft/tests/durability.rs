//! openraft hears "flushed" only for what a power loss cannot take away.
//!
//! The WAL runs on storage's simulated disk, which keeps, per file, only the bytes a completed
//! `fdatasync` covered. Whatever the log store acknowledged through `IOFlushed` (or by
//! returning from `save_vote`) must still be there on the disk a power cut leaves behind; a
//! batch whose fsync failed must be reported as failed, never as flushed.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use islab_raft::{Entry, EntryPayload, LogId, LogStore, Membership, TypeConfig, Vote};
use islab_storage::sim::SimFs;
use islab_storage::{Command, Wal, WalConfig};
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use tokio::sync::oneshot;

const GROUP: u64 = 5;

fn wal_on(fs: &SimFs) -> Wal {
    let (wal, _report) = Wal::open_with(
        Path::new("/node/wal"),
        WalConfig::default(),
        Arc::new(fs.clone()),
    )
    .expect("open WAL");
    wal
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes
        .map(|index| {
            let log_id = LogId {
                leader_id: term.into(),
                index,
            };
            let payload = if index == 1 {
                EntryPayload::Membership(Membership::new_with_defaults(
                    vec![BTreeSet::from([1])],
                    [],
                ))
            } else {
                EntryPayload::Normal(islab_storage::Request::new(Command::Put {
                    key: Bytes::from(format!("k{index}")),
                    value: Bytes::from_static(b"v"),
                    expires_at: None,
                }))
            };
            Entry { log_id, payload }
        })
        .collect()
}

/// Appends through the log store; returns what openraft's callback will be told.
async fn append(
    store: &mut LogStore,
    batch: Vec<Entry>,
) -> oneshot::Receiver<Result<(), io::Error>> {
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(batch, IOFlushed::signal(tx))
        .await
        .expect("append accepted");
    rx
}

#[tokio::test]
async fn what_was_reported_flushed_survives_a_power_loss() {
    let disk = SimFs::new();
    let mut store = LogStore::new(GROUP, wal_on(&disk));

    tracing::info!("--- a durable vote, then two appends acknowledged by the WAL");
    let vote = Vote::new_committed(2, 1);
    store.save_vote(&vote).await.expect("vote saved");
    let first = append(&mut store, entries(2, 1..=3)).await;
    // Readable as soon as `append` returns, durable or not.
    assert_eq!(store.try_get_log_entries(1..4).await.unwrap().len(), 3);
    let second = append(&mut store, entries(2, 4..=6)).await;
    first.await.unwrap().expect("first batch durable");
    second.await.unwrap().expect("second batch durable");

    tracing::info!("--- cut the power and recover from what the disk kept");
    let after = disk.power_loss();
    let mut recovered = LogStore::new(GROUP, wal_on(&after));
    assert_eq!(recovered.read_vote().await.unwrap(), Some(vote));
    let got = recovered.try_get_log_entries(..).await.unwrap();
    assert_eq!(got, entries(2, 1..=6));
}

#[tokio::test]
async fn a_failed_fsync_is_never_reported_as_flushed() {
    let disk = SimFs::new();
    let mut store = LogStore::new(GROUP, wal_on(&disk));
    append(&mut store, entries(1, 1..=2))
        .await
        .await
        .unwrap()
        .expect("durable before the fault");

    tracing::info!("--- every fsync from now on fails with EIO");
    disk.fail_syncs_after(0);
    let (tx, rx) = TypeConfig::oneshot();
    // The WAL may refuse the append at once or accept it and fail its batch: never success.
    if store
        .append(entries(1, 3..=4), IOFlushed::signal(tx))
        .await
        .is_ok()
    {
        let flushed = rx.await.expect("openraft is told the outcome");
        assert!(
            flushed.is_err(),
            "a batch whose fsync failed was reported flushed"
        );
    }

    tracing::info!("--- a vote after the failure is not acknowledged either");
    assert!(store.save_vote(&Vote::new_committed(3, 1)).await.is_err());
}
