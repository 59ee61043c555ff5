//! Read access to one group's log, for openraft's replication and apply tasks.
//!
//! Every replication stream of a leader owns a [`LogReader`]; the apply task owns one more.
//! A reader is only a group id and a clone of the node's WAL handle, so it sees every entry the
//! moment `append` returns — before it is durable — which is what openraft requires of a
//! reader obtained before the append. Reads are served from the WAL's entry cache or its
//! segments and checked for holes: a gap inside the range would let openraft apply or ship a
//! log that skips an entry, so it becomes an error instead.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, Range, RangeBounds};

use islab_storage::{GroupId, LogRecord, Wal};
use openraft::{OptionalSend, RaftLogReader};

use crate::encoding;
use crate::error::{Error, io_error};
use crate::type_config::{Entry, TypeConfig, Vote};

/// At most this many payload bytes per [`RaftLogReader::limited_get_log_entries`] call (but
/// always at least one entry). openraft bounds the entry count (`max_payload_entries`); with
/// values up to 1 MiB each that alone could make a multi-hundred-MiB AppendEntries message.
const MAX_BYTES_PER_READ: usize = 4 << 20;

/// A reader of one group's log and vote.
#[derive(Clone)]
pub struct LogReader {
    group: GroupId,
    wal: Wal,
}

impl LogReader {
    /// A reader of `group`'s log in `wal`.
    pub fn new(group: GroupId, wal: Wal) -> LogReader {
        LogReader { group, wal }
    }

    /// The entries with index in `range` that the log holds, decoded, with no hole among them.
    pub(crate) fn read(&self, range: Range<u64>) -> Result<Vec<Entry>, Error> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        self.decode(self.wal.read(self.group, range)?)
    }

    /// Like [`read`](Self::read), but stops before the entry that would take the payload past
    /// [`MAX_BYTES_PER_READ`] (never before the first).
    fn read_limited(&self, range: Range<u64>) -> Result<Vec<Entry>, Error> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let mut records = self.wal.read(self.group, range)?;
        let mut bytes = 0;
        let keep = records
            .iter()
            .position(|r| {
                bytes += r.payload.len();
                bytes > MAX_BYTES_PER_READ
            })
            .map_or(records.len(), |over| over.max(1));
        records.truncate(keep);
        self.decode(records)
    }

    fn decode(&self, records: Vec<LogRecord>) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::with_capacity(records.len());
        let mut expected = records.first().map(|r| r.index);
        for record in &records {
            if let Some(expected) = expected
                && record.index != expected
            {
                return Err(Error::LogHole {
                    group: self.group,
                    expected,
                    got: record.index,
                });
            }
            expected = record.index.checked_add(1);
            entries.push(encoding::record_to_entry(record)?);
        }
        Ok(entries)
    }

    /// The last vote saved for the group, if any.
    pub(crate) fn vote(&self) -> Result<Option<Vote>, Error> {
        self.wal
            .vote(self.group)
            .map(|bytes| encoding::decode_vote(&bytes))
            .transpose()
    }
}

impl Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("group", &self.group)
            .finish()
    }
}

/// `start..end` of any range of indexes; an unbounded end reads to the end of the log.
fn index_range(range: &impl RangeBounds<u64>) -> Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read(index_range(&range)).map_err(io_error)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.vote().map_err(io_error)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_limited(start..end).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use islab_storage::{Command, LogPos, WalConfig};

    use super::*;
    use crate::type_config::EntryPayload;

    fn put_entry(index: u64, value_len: usize) -> Entry {
        Entry {
            log_id: encoding::log_id(LogPos { term: 1, index }),
            payload: EntryPayload::Normal(islab_storage::Request::new(Command::Put {
                key: Bytes::from(format!("k{index}")),
                value: Bytes::from(vec![b'x'; value_len]),
                expires_at: None,
            })),
        }
    }

    #[test]
    fn limited_reads_stop_at_the_byte_budget_but_never_return_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        let big = MAX_BYTES_PER_READ * 3 / 4;
        let entries: Vec<Entry> = (1..=3).map(|i| put_entry(i, big)).collect();
        let records = entries
            .iter()
            .map(|e| encoding::entry_to_record(e).unwrap())
            .collect();
        wal.append(9, records, |_| {}).unwrap();
        let reader = LogReader::new(9, wal.clone());

        assert_eq!(reader.read(1..4).unwrap(), entries);
        assert_eq!(reader.read_limited(1..4).unwrap(), entries[..1]);
        assert_eq!(reader.read_limited(2..4).unwrap(), entries[1..2]);
        assert!(reader.read_limited(4..9).unwrap().is_empty());
        wal.shutdown().unwrap();
    }

    #[test]
    fn range_bounds_become_half_open() {
        assert_eq!(index_range(&(3..7)), 3..7);
        assert_eq!(index_range(&(3..=7)), 3..8);
        assert_eq!(index_range(&(3..)), 3..u64::MAX);
        assert_eq!(index_range(&..), 0..u64::MAX);
        assert_eq!(index_range(&(..=u64::MAX)), 0..u64::MAX);
        let excluded_start = (Bound::Excluded(2), Bound::Excluded(4));
        assert_eq!(index_range(&excluded_start), 3..4);
    }
}
