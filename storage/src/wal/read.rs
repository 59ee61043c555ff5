//! Reading a group's entries back: from the payload cache while the writer has not written
//! them yet, from their segment files once it has.
//!
//! The plan is made under the state lock (which entries, cached or where on disk) and the
//! files are read after it is released, so a slow read never holds up appends. A segment file
//! is kept open while any live entry is in it, so the planned reads cannot find it gone.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fs::WalFile;
use crate::wal::Wal;
use crate::wal::record::{Decoded, Record, decode};
use crate::wal::segment::segment_path;
use crate::{GroupId, LogRecord};

impl Wal {
    /// The entries of `group` present in `range`, ascending.
    pub fn read(&self, group: GroupId, range: Range<u64>) -> Result<Vec<LogRecord>> {
        enum Plan {
            Cached(u64, u64, Bytes),
            Disk(u64, u64, Arc<dyn WalFile>, u64, u64, u32),
        }
        let plan = {
            let st = self.lock();
            let Some(log) = st.groups.get(&group) else {
                return Ok(Vec::new());
            };
            let Some(last) = log.last_index() else {
                return Ok(Vec::new());
            };
            let start = range.start.max(log.first);
            let end = range.end.min(last + 1);
            let mut plan = Vec::with_capacity(end.saturating_sub(start) as usize);
            for index in start..end {
                let loc = log.get(index).expect("contiguous log");
                plan.push(match &loc.cached {
                    Some(p) => Plan::Cached(loc.term, index, p.clone()),
                    None => {
                        let file = st.files.get(&loc.segment).cloned().ok_or_else(|| {
                            Error::WalFailed {
                                reason: format!("segment {} of a live entry is gone", loc.segment),
                            }
                        })?;
                        Plan::Disk(loc.term, index, file, loc.segment, loc.offset, loc.len)
                    }
                });
            }
            plan
        };
        let mut out = Vec::with_capacity(plan.len());
        for p in plan {
            out.push(match p {
                Plan::Cached(term, index, payload) => LogRecord {
                    term,
                    index,
                    payload,
                },
                Plan::Disk(term, index, file, segment, offset, len) => {
                    let path = segment_path(&self.shared().dir, segment);
                    let mut buf = vec![0u8; len as usize];
                    file.read_at(&mut buf, offset)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    match decode(&Bytes::from(buf)) {
                        Decoded::Record(
                            Record::Entry {
                                group: g,
                                index: i,
                                payload,
                                ..
                            },
                            _,
                        ) if g == group && i == index => LogRecord {
                            term,
                            index,
                            payload,
                        },
                        other => {
                            return Err(Error::Corrupt {
                                file: path,
                                offset,
                                reason: format!(
                                    "expected entry {index} of group {group}, found {other:?}"
                                ),
                            });
                        }
                    }
                }
            });
        }
        Ok(out)
    }
}
