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
use crate::wal::group_log::{GroupLog, Loc};
use crate::wal::record::Record;
use crate::wal::scan::{Damage, DamageKind, HeaderFault, ScanItem, SegmentScan, segment_seqs};
use crate::wal::segment::{WAL_FORMAT_VERSION, segment_path};

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
    let names = fs
        .list(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let seqs = segment_seqs(names.iter().map(String::as_str));

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
        let len = data.len() as u64;
        let end = match scan.segment(
            seq,
            &path,
            SegmentScan::new(seq, data, is_last),
            &mut r.report,
        )? {
            Kept::Upto(end) => end,
            Kept::Skipped => continue,
            Kept::TornCreation => {
                fs.remove(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                continue;
            }
        };
        let file = fs
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        if end < len {
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

/// What recovery keeps of one segment.
enum Kept {
    /// Its records up to this offset (the rest, a torn tail, is cut).
    Upto(u64),
    /// None: a corrupt segment skipped in tolerate-corruption mode. The file stays.
    Skipped,
    /// None, and the file goes: the last segment, whose creation was torn (no valid header).
    TornCreation,
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
    /// Replays one segment: applies its records and decides what its damage means.
    fn segment(
        &mut self,
        seq: u64,
        path: &Path,
        items: SegmentScan,
        report: &mut RecoveryReport,
    ) -> Result<Kept> {
        let tolerate = self.mode == RecoveryMode::TolerateCorruption;
        let corrupt = |offset, reason| Error::Corrupt {
            file: path.to_path_buf(),
            offset,
            reason,
        };
        let mut items = items;
        for item in items.by_ref() {
            let damage = match item {
                ScanItem::Record {
                    offset,
                    len,
                    record,
                } => {
                    self.apply(record, seq, offset, len as u32);
                    report.records += 1;
                    continue;
                }
                ScanItem::Damage(damage) => damage,
            };
            let Damage {
                offset,
                kind,
                reason,
                resumed_at,
                bytes,
            } = damage;
            match kind {
                DamageKind::BadHeader(HeaderFault::Version(version)) => {
                    return Err(Error::UnsupportedVersion {
                        file: path.to_path_buf(),
                        version,
                        supported: WAL_FORMAT_VERSION,
                    });
                }
                // A header naming another segment is a file misplaced by hand: never skipped.
                DamageKind::BadHeader(HeaderFault::WrongSegment(_)) => {
                    return Err(corrupt(0, reason));
                }
                DamageKind::TornTail => {
                    let creation = offset == 0;
                    if creation {
                        tracing::warn!(file = %path.display(), %reason, "removing a torn new WAL segment");
                    } else {
                        tracing::warn!(
                            file = %path.display(), offset, %reason,
                            "cutting a torn tail off the WAL (never acknowledged)"
                        );
                    }
                    report.torn_tail = Some(TornTail {
                        file: path.to_path_buf(),
                        offset,
                        bytes_dropped: bytes,
                        reason,
                    });
                    return Ok(if creation {
                        Kept::TornCreation
                    } else {
                        Kept::Upto(offset)
                    });
                }
                DamageKind::BadHeader(HeaderFault::Invalid(_)) | DamageKind::Corrupt
                    if offset == 0 =>
                {
                    if !tolerate {
                        return Err(corrupt(0, reason));
                    }
                    tracing::error!(file = %path.display(), %reason, "skipping a whole WAL segment");
                    report.skipped.push(Skipped {
                        file: path.to_path_buf(),
                        offset: 0,
                        reason,
                    });
                    return Ok(Kept::Skipped);
                }
                DamageKind::BadHeader(HeaderFault::Invalid(_)) | DamageKind::Corrupt => {
                    if !tolerate {
                        let why = if resumed_at.is_some() {
                            "valid records follow, so this is not a torn write"
                        } else {
                            "the segment was synced in full before a newer one was started, \
                             so this is not a torn write"
                        };
                        return Err(corrupt(
                            offset,
                            format!(
                                "{reason} ({why}; start with \
                                 --wal-recovery=tolerate-corruption to skip it)"
                            ),
                        ));
                    }
                    tracing::error!(file = %path.display(), offset, %reason, "skipping a corrupt WAL record");
                    report.skipped.push(Skipped {
                        file: path.to_path_buf(),
                        offset,
                        reason,
                    });
                    if resumed_at.is_none() {
                        return Ok(Kept::Upto(offset));
                    }
                }
            }
        }
        Ok(Kept::Upto(items.segment_len() as u64))
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
