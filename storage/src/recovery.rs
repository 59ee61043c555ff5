//! Rebuilding the WAL's in-memory index from its segments at open.
//!
//! Every record's checksum is verified. What happens at a bad record depends on where it is
//! and on the [`RecoveryMode`]:
//!
//! ```text
//!                                last segment              any other segment
//! torn tail (record runs past     cut it (never acked:      -
//!   EOF, or bad and no valid       the writer syncs before
//!   record follows)                acknowledging)
//! bad record, valid ones follow   refuse: Corrupt{file, offset}, unless tolerate-corruption
//!                                 skips it, says so, and cuts the logs it left a hole in
//! ```
//!
//! Every segment but the last was fully synced before the next one was started, so damage
//! there is never a torn write.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::GroupId;
use crate::LogPos;
use crate::config::RecoveryMode;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, WalFile};
use crate::group_log::{GroupLog, Loc};
use crate::record::{Decoded, Record, decode, find_next_record};
use crate::segment::{
    HeaderError, SEGMENT_HEADER_LEN, WAL_FORMAT_VERSION, decode_header, parse_segment_name,
    segment_path,
};

/// What recovery found and did; logged at open and shown by `islab wal dump`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Entries live after recovery, over all groups.
    pub entries: u64,
    pub groups: usize,
    /// A torn tail that was cut from the last segment.
    pub torn_tail: Option<TornTail>,
    /// Corrupt records skipped (tolerate-corruption mode only).
    pub skipped: Vec<Skipped>,
    /// Groups whose log was cut at a hole left by a skipped record: (group, last index kept).
    pub cut_groups: Vec<(GroupId, Option<u64>)>,
    pub duration: Duration,
}

/// The cut end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// A corrupt record passed over in tolerate-corruption mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

pub(crate) struct Recovered {
    pub groups: HashMap<GroupId, GroupLog>,
    pub files: BTreeMap<u64, Arc<dyn WalFile>>,
    pub sizes: BTreeMap<u64, u64>,
    pub last_segment: u64,
    pub report: RecoveryReport,
}

pub(crate) fn recover(dir: &Path, fs: &dyn FileSystem, mode: RecoveryMode) -> Result<Recovered> {
    let started = Instant::now();
    let mut seqs: Vec<u64> = fs
        .list(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    seqs.sort_unstable();

    let mut r = Recovered {
        groups: HashMap::new(),
        files: BTreeMap::new(),
        sizes: BTreeMap::new(),
        last_segment: seqs.last().copied().unwrap_or(0),
        report: RecoveryReport::default(),
    };
    let mut scan = Scan {
        mode,
        groups: HashMap::new(),
        cut: BTreeMap::new(),
    };
    for (i, &seq) in seqs.iter().enumerate() {
        let is_last = i + 1 == seqs.len();
        let path = segment_path(dir, seq);
        let data = Bytes::from(
            fs.read_all(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?,
        );
        match decode_header(&data) {
            Ok(found) if found == seq => {}
            Ok(found) => {
                return Err(Error::Corrupt {
                    file: path,
                    offset: 0,
                    reason: format!("header says segment {found}"),
                });
            }
            Err(HeaderError::Version(version)) => {
                return Err(Error::UnsupportedVersion {
                    file: path,
                    version,
                    supported: WAL_FORMAT_VERSION,
                });
            }
            Err(e) if is_last && data.len() <= SEGMENT_HEADER_LEN => {
                // A segment whose creation was torn: it holds no record.
                tracing::warn!(file = %path.display(), reason = ?e, "removing a torn new WAL segment");
                r.report.torn_tail = Some(TornTail {
                    file: path.clone(),
                    offset: 0,
                    bytes_dropped: data.len() as u64,
                    reason: format!("{e:?}"),
                });
                fs.remove(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                continue;
            }
            Err(e) => {
                let reason = format!("bad segment header: {e:?}");
                if mode == RecoveryMode::TolerateCorruption {
                    tracing::error!(file = %path.display(), %reason, "skipping a whole WAL segment");
                    r.report.skipped.push(Skipped {
                        file: path,
                        offset: 0,
                        reason,
                    });
                    continue;
                }
                return Err(Error::Corrupt {
                    file: path,
                    offset: 0,
                    reason,
                });
            }
        }
        let end = scan.segment(seq, &path, &data, is_last, &mut r.report)?;
        let file = fs
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        if end < data.len() as u64 {
            // Cut the torn tail for good: this segment is about to stop being the last one.
            file.set_len(end)
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
        }
        r.files.insert(seq, file);
        r.sizes.insert(seq, end);
        r.report.segments += 1;
    }
    let (mut groups, cut) = scan.finish(dir)?;
    groups.retain(|_, g| !g.is_blank());
    r.groups = groups;
    r.report.cut_groups = cut.into_iter().collect();
    r.report.groups = r.groups.len();
    r.report.entries = r.groups.values().map(|g| g.locs.len() as u64).sum();
    r.report.duration = started.elapsed();
    tracing::info!(
        segments = r.report.segments,
        records = r.report.records,
        entries = r.report.entries,
        groups = r.report.groups,
        elapsed_ms = r.report.duration.as_millis() as u64,
        "WAL recovered"
    );
    Ok(r)
}

/// Groups cut at a hole, with the last index kept.
type CutGroups = BTreeMap<GroupId, Option<u64>>;

struct Scan {
    mode: RecoveryMode,
    groups: HashMap<GroupId, Replayed>,
    /// Groups cut at a hole (tolerate mode), with the last index kept.
    cut: BTreeMap<GroupId, Option<u64>>,
}

/// One group's log while records are replayed. Entries are kept sparse: a hole may be
/// legitimate until every record has been seen (the entries in it sat in segments already
/// collected, killed by a purge or truncate that comes later in the log). Holes still there
/// at the end are damage.
#[derive(Default)]
struct Replayed {
    entries: BTreeMap<u64, Loc>,
    purged: Option<LogPos>,
    vote: Option<Bytes>,
    committed: Option<Bytes>,
}

impl Scan {
    /// Replays one segment; returns the offset where its valid records end.
    fn segment(
        &mut self,
        seq: u64,
        path: &Path,
        data: &Bytes,
        is_last: bool,
        report: &mut RecoveryReport,
    ) -> Result<u64> {
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < data.len() {
            let reason = match decode(&data.slice(pos..)) {
                Decoded::Record(record, len) => {
                    self.apply(record, seq, pos as u64, len as u32);
                    report.records += 1;
                    pos += len;
                    continue;
                }
                Decoded::Incomplete => "the record runs past the end of the file".to_string(),
                Decoded::Corrupt(reason) => reason,
            };
            let next = find_next_record(data, pos);
            if is_last && next.is_none() {
                tracing::warn!(
                    file = %path.display(), offset = pos, %reason,
                    "cutting a torn tail off the WAL (never acknowledged)"
                );
                report.torn_tail = Some(TornTail {
                    file: path.to_path_buf(),
                    offset: pos as u64,
                    bytes_dropped: (data.len() - pos) as u64,
                    reason,
                });
                return Ok(pos as u64);
            }
            if self.mode != RecoveryMode::TolerateCorruption {
                return Err(Error::Corrupt {
                    file: path.to_path_buf(),
                    offset: pos as u64,
                    reason: format!(
                        "{reason} (valid records follow, so this is not a torn write; \
                         start with --wal-recovery=tolerate-corruption to skip it)"
                    ),
                });
            }
            tracing::error!(file = %path.display(), offset = pos, %reason, "skipping a corrupt WAL record");
            report.skipped.push(Skipped {
                file: path.to_path_buf(),
                offset: pos as u64,
                reason,
            });
            match next {
                Some(next) => pos = next,
                None => return Ok(pos as u64),
            }
        }
        Ok(pos as u64)
    }

    fn apply(&mut self, record: Record, seq: u64, offset: u64, len: u32) {
        let group = record.group();
        let log = self.groups.entry(group).or_default();
        match record {
            Record::Entry { term, index, .. } => {
                if log.purged.is_some_and(|p| index <= p.index) {
                    return; // purged already; the segment just has not been deleted
                }
                // A new entry at `index` replaces it and everything after it.
                let _ = log.entries.split_off(&index);
                log.entries.insert(
                    index,
                    Loc {
                        segment: seq,
                        offset,
                        len,
                        term,
                        cached: None,
                    },
                );
            }
            Record::Truncate { after, .. } => match after {
                Some(a) => drop(log.entries.split_off(&(a + 1))),
                None => log.entries.clear(),
            },
            Record::Purge { upto, .. } => {
                if log.purged.is_none_or(|p| p.index < upto.index) {
                    log.entries = log.entries.split_off(&(upto.index + 1));
                    log.purged = Some(upto);
                }
            }
            Record::Vote { data, .. } => log.vote = Some(data),
            Record::Committed { data, .. } => log.committed = Some(data),
        }
    }

    /// Turns the replayed groups into contiguous logs: refuses a hole (naming the file and
    /// offset of the first entry after it) or, in tolerate mode, cuts the log before it.
    fn finish(self, dir: &Path) -> Result<(HashMap<GroupId, GroupLog>, CutGroups)> {
        let mut cut = self.cut;
        let mut groups = HashMap::new();
        for (group, replayed) in self.groups {
            let mut log = GroupLog {
                purged: replayed.purged,
                vote: replayed.vote,
                committed: replayed.committed,
                ..GroupLog::default()
            };
            let mut expected = replayed.purged.map(|p| p.index + 1);
            for (index, loc) in replayed.entries {
                if let Some(e) = expected
                    && e != index
                {
                    if self.mode != RecoveryMode::TolerateCorruption {
                        return Err(Error::Corrupt {
                            file: segment_path(dir, loc.segment),
                            offset: loc.offset,
                            reason: format!(
                                "group {group}: entry {index} follows a hole (entry {e} is missing)"
                            ),
                        });
                    }
                    tracing::error!(group, missing = e, "cutting a group's log at a hole");
                    cut.insert(group, log.last_index());
                    break;
                }
                log.push(index, loc);
                expected = Some(index + 1);
            }
            if log.locs.is_empty()
                && let Some(p) = log.purged
            {
                log.first = p.index + 1;
            }
            groups.insert(group, log);
        }
        Ok((groups, cut))
    }
}
