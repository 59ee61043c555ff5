//! One group's Raft log, kept in the node's single WAL.
//!
//! A [`LogStore`] is a group id plus a clone of the node's [`Wal`]: all shards on a node write
//! into the same WAL, so one `fdatasync` covers the appends of every group in a batch. The
//! durability contract openraft relies on is kept here:
//!
//! ```text
//! openraft append(entries, IOFlushed)
//!   -> wal.append(group, records, on_durable)   entries readable when this returns
//!        ... WAL writer thread: write batch, fdatasync ...
//!      on_durable(Ok)  -> IOFlushed::io_completed(Ok)   only now may openraft count them
//!      on_durable(Err) -> IOFlushed::io_completed(Err)  openraft stops the group
//! ```
//!
//! A vote is acknowledged only once durable: `save_vote` waits for the WAL's callback. The
//! committed log id rides with the next batch — openraft only needs it to replay the log after
//! a restart, and losing the last one merely replays less.

use std::io;

use islab_storage::{GroupId, LogRecord, Wal};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use tokio::sync::oneshot;

use crate::encoding;
use crate::error::{Error, io_error};
use crate::log_reader::LogReader;
use crate::type_config::{Entry, LogId, LogState, TypeConfig, Vote};

/// The Raft log and vote of one group.
#[derive(Clone)]
pub struct LogStore {
    reader: LogReader,
    group: GroupId,
    wal: Wal,
}

impl LogStore {
    /// The log of `group` in the node's `wal`.
    pub fn new(group: GroupId, wal: Wal) -> LogStore {
        LogStore {
            reader: LogReader::new(group, wal.clone()),
            group,
            wal,
        }
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    fn log_state(&self) -> LogState {
        let state = self.wal.log_state(self.group);
        LogState {
            last_purged_log_id: state.purged.map(encoding::log_id),
            last_log_id: state.last.map(encoding::log_id),
        }
    }

    async fn save_vote_durably(&self, vote: &Vote) -> Result<(), Error> {
        let bytes = encoding::encode_vote(vote)?;
        let (tx, rx) = oneshot::channel();
        self.wal.save_vote(self.group, bytes, move |result| {
            // The receiver is gone only if the caller gave up waiting; nothing to tell then.
            let _ = tx.send(result);
        })?;
        match rx.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::CallbackDropped {
                group: self.group,
                what: "a vote",
            }),
        }
    }

    fn append_records(
        &self,
        entries: Vec<Entry>,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), Error> {
        let records = entries
            .iter()
            .map(encoding::entry_to_record)
            .collect::<Result<Vec<LogRecord>, Error>>()?;
        let flushed = FlushedWhenDurable::new(self.group, callback);
        self.wal
            .append(self.group, records, move |result| flushed.complete(result))?;
        Ok(())
    }

    fn save_committed(&self, committed: &Option<LogId>) -> Result<(), Error> {
        let bytes = encoding::encode_committed(committed)?;
        Ok(self.wal.save_committed(self.group, bytes)?)
    }

    fn read_committed(&self) -> Result<Option<LogId>, Error> {
        match self.wal.committed(self.group) {
            Some(bytes) => encoding::decode_committed(&bytes),
            None => Ok(None),
        }
    }
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("group", &self.group)
            .finish()
    }
}

/// Hands an append's durability outcome to openraft, exactly once.
///
/// Run by the WAL (on its writer thread) when the batch holding the append is durable or has
/// failed. If the WAL drops it without running it — a bug, or a shutdown racing the append —
/// the outcome is unknown, so openraft is told the IO failed rather than left waiting forever
/// or, worse, told it succeeded.
struct FlushedWhenDurable {
    group: GroupId,
    callback: Option<IOFlushed<TypeConfig>>,
}

impl FlushedWhenDurable {
    fn new(group: GroupId, callback: IOFlushed<TypeConfig>) -> FlushedWhenDurable {
        FlushedWhenDurable {
            group,
            callback: Some(callback),
        }
    }

    fn complete(mut self, result: islab_storage::Result<()>) {
        if let Some(callback) = self.callback.take() {
            callback.io_completed(result.map_err(io_error));
        }
    }
}

impl Drop for FlushedWhenDurable {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            callback.io_completed(Err(io_error(Error::CallbackDropped {
                group: self.group,
                what: "an append",
            })));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> Result<Vec<Entry>, io::Error>
    where
        RB: std::ops::RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend,
    {
        self.reader.try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.reader.read_vote().await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.reader.limited_get_log_entries(start, end).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState, io::Error> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.save_vote_durably(vote).await.map_err(io_error)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        LogStore::save_committed(self, &committed).map_err(io_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        LogStore::read_committed(self).map_err(io_error)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_records(entries.into_iter().collect(), callback)
            .map_err(io_error)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let after = last_log_id.map(|id| id.index);
        self.wal.truncate_after(self.group, after).map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.wal
            .purge(self.group, encoding::log_pos(&log_id))
            .map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use openraft::type_config::TypeConfigExt;

    use super::*;

    fn signal() -> (
        IOFlushed<TypeConfig>,
        oneshot::Receiver<Result<(), io::Error>>,
    ) {
        let (tx, rx) = TypeConfig::oneshot();
        (IOFlushed::signal(tx), rx)
    }

    #[tokio::test]
    async fn openraft_hears_of_an_append_only_when_the_wal_says_durable() {
        let (callback, mut rx) = signal();
        let flushed = FlushedWhenDurable::new(1, callback);
        assert!(
            rx.try_recv().is_err(),
            "nothing reported before the WAL's callback"
        );
        flushed.complete(Ok(()));
        assert!(rx.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_failed_batch_is_reported_as_failed() {
        let (callback, rx) = signal();
        FlushedWhenDurable::new(1, callback).complete(Err(islab_storage::Error::WalFailed {
            reason: "fsync: EIO".into(),
        }));
        let err = rx.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("EIO"));
    }

    #[tokio::test]
    async fn a_dropped_callback_is_a_failure_never_a_success() {
        let (callback, rx) = signal();
        drop(FlushedWhenDurable::new(7, callback));
        let err = rx.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("group 7"), "{err}");
    }
}
