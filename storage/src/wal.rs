//! The node's one write-ahead log: the Raft log of every group (shard) on the node.
//!
//! ```text
//!  append/truncate/purge/vote (any thread)         writer thread (one per WAL)
//!  ───────────────────────────────────────         ─────────────────────────────
//!  encode frames (no lock)                         recv first op, drain the rest
//!  lock state: check contiguity, reserve           write every pending frame
//!    (segment, offset), update the group index,    one fdatasync for the whole batch
//!    put payloads in the cache, send the op  ───►  fire every callback of the batch
//!  unlock; return (entries readable now)           evict written payloads, GC segments
//! ```
//!
//! Invariants others rely on:
//! - An append's callback runs with `Ok` only after an fdatasync that covers it returned (sync
//!   mode). After a failed write or sync the writer stops for good: every later callback gets
//!   `Err(WalFailed)` and the failed bytes are never reported durable (the fsyncgate lesson).
//! - Reservation and sending happen under one lock, so file order is submission order: a
//!   callback that fires implies everything submitted before it is durable too (Raft needs vote
//!   and log writes serialized; they share this queue).
//! - Payloads stay cached until the writer has written them, so a read never sees a hole.
//! - Only a prefix of segments is deleted, and only once the records that killed their entries
//!   are durable; every new segment starts with each group's purge point, vote and committed,
//!   so deleting old segments never loses that state.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFs};
use crate::latency::Latency;
use crate::{GroupId, LogPos, LogRecord, LogState};
use group_log::{GroupLog, Loc};
use record::Record;
use recovery::RecoveryReport;
use segment::segment_path;
use shared::{CACHE_OVERHEAD, Counters, Msg, Op, Shared, State};
use submission::{encode_summary, join, reserve, send, submit};

pub(crate) mod group_log;
mod read;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod scan;
pub(crate) mod segment;
mod shared;
mod submission;
mod writer;

pub use shared::Callback;

/// Counters for status pages and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub segments: u64,
    /// Bytes in all live segment files.
    pub bytes: u64,
    pub entries_appended: u64,
    pub fsyncs: u64,
    pub batches: u64,
    pub groups: u64,
    /// Bytes written to segment files since open.
    pub bytes_written: u64,
    /// How long the fsyncs since open took.
    pub fsync_latency: Latency,
}

/// A handle to the node's WAL. Cheap to clone; the writer stops when the last clone drops.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = stop(&self.shared, &self.writer);
    }
}

fn stop(shared: &Shared, writer: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
    let handle = writer.lock().unwrap().take();
    let Some(handle) = handle else {
        return Ok(());
    };
    if handle.thread().id() == std::thread::current().id() {
        // Dropped from inside a callback: ask the writer to stop, but it cannot wait for itself.
        let mut st = shared.state.lock().unwrap();
        st.closed = true;
        let _ = st.tx.send(Msg::Shutdown(Box::new(|_| {})));
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    {
        let mut st = shared.state.lock().unwrap();
        st.closed = true;
        let _ = st.tx.send(Msg::Shutdown(Box::new(move |r| {
            let _ = tx.send(r);
        })));
    }
    let result = rx.recv().unwrap_or(Err(Error::Shutdown));
    let _ = handle.join();
    result
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.dir)
            .finish()
    }
}

impl Wal {
    /// Opens (recovering) or creates the WAL in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Wal, RecoveryReport)> {
        Wal::open_with(dir, config, Arc::new(StdFs))
    }

    /// Opens the WAL on a given file system (tests use [`crate::sim::SimFs`]).
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: WalConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(Wal, RecoveryReport)> {
        config.sanitize()?;
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let recovered = recovery::recover(&dir, fs.as_ref(), config.recovery)?;

        // Start a fresh segment holding every group's state, so older segments can go.
        let active = recovered.last_segment + 1;
        let mut header_and_summary = Vec::new();
        header_and_summary.extend_from_slice(&segment::encode_header(active));
        encode_summary(&recovered.groups, &mut header_and_summary);
        let path = segment_path(&dir, active);
        let file = fs
            .create(&path)
            .and_then(|f| {
                f.write_at(&header_and_summary, 0)?;
                f.sync_data()?;
                Ok(f)
            })
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        fs.sync_dir(&dir)
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;

        let mut files = recovered.files;
        let mut sizes = recovered.sizes;
        files.insert(active, file.clone());
        sizes.insert(active, header_and_summary.len() as u64);
        let mut live: BTreeMap<u64, u64> = files.keys().map(|s| (*s, 0)).collect();
        for g in recovered.groups.values() {
            for loc in &g.locs {
                *live.entry(loc.segment).or_default() += 1;
            }
        }

        let (tx, rx) = mpsc::channel();
        let segment_size = config.segment_size;
        let shared = Arc::new(Shared {
            dir,
            fs,
            config,
            state: Mutex::new(State {
                groups: recovered.groups,
                active,
                active_len: header_and_summary.len() as u64,
                files,
                sizes,
                cache: VecDeque::new(),
                cache_bytes: 0,
                segment_size,
                failed: None,
                closed: false,
                tx,
            }),
            counters: Counters::default(),
        });
        writer::collect_garbage(&shared, &mut live, active)?;
        let handle = writer::spawn(shared.clone(), rx, (active, file), live)?;
        let wal = Wal {
            inner: Arc::new(Inner {
                shared,
                writer: Mutex::new(Some(handle)),
            }),
        };
        Ok((wal, recovered.report))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared().state.lock().unwrap()
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// The settings the WAL runs with.
    pub fn config(&self) -> &WalConfig {
        &self.shared().config
    }

    /// Appends entries to `group`'s log. They must continue the log (index = last + 1, or any
    /// index for an empty log with nothing purged). They are readable when this returns;
    /// `on_durable` runs on the writer thread once they are durable (sync) or written (async).
    pub fn append(
        &self,
        group: GroupId,
        entries: Vec<LogRecord>,
        on_durable: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        let mut buf = Vec::with_capacity(
            entries
                .iter()
                .map(|e| Record::entry_frame_len(group, e.term, e.index, e.payload.len()))
                .sum(),
        );
        let mut frames = Vec::with_capacity(entries.len());
        for e in &entries {
            let offset = buf.len();
            let len = Record::Entry {
                group,
                term: e.term,
                index: e.index,
                payload: e.payload.clone(),
            }
            .encode(&mut buf);
            frames.push((offset as u64, len as u32));
        }

        let mut st = self.lock();
        st.check()?;
        let log = st.groups.entry(group).or_default();
        let mut expect = log.next_index();
        for e in &entries {
            if expect.is_some_and(|x| x != e.index) {
                return Err(Error::NotContiguous {
                    group,
                    got: e.index,
                    last: expect.map(|x| x - 1),
                });
            }
            expect = Some(e.index + 1);
        }
        let (segment, base, prefix) = reserve(&mut st, buf.len() as u64);
        let log = st.groups.get_mut(&group).unwrap();
        for (e, (rel, len)) in entries.iter().zip(&frames) {
            log.push(
                e.index,
                Loc {
                    segment,
                    offset: base + rel,
                    len: *len,
                    term: e.term,
                    cached: Some(e.payload.clone()),
                },
            );
        }
        for (e, (rel, _)) in entries.iter().zip(&frames) {
            st.cache
                .push_back((group, e.index, segment, base + rel, e.payload.len()));
            st.cache_bytes += e.payload.len() + CACHE_OVERHEAD;
        }
        let adds = entries.len() as u64;
        send(
            &mut st,
            Op {
                segment,
                offset: base - prefix.len() as u64,
                bytes: join(prefix, buf),
                adds,
                drops: Vec::new(),
                done: Some(Box::new(on_durable)),
            },
        );
        Ok(())
    }

    /// Removes `group`'s entries with index > `after` (all of them when `None`).
    pub fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<()> {
        let mut st = self.lock();
        st.check()?;
        let Some(log) = st.groups.get_mut(&group) else {
            return Ok(());
        };
        let mut drops = BTreeMap::new();
        log.truncate_after(after, |loc| *drops.entry(loc.segment).or_insert(0) += 1);
        if drops.is_empty() {
            return Ok(());
        }
        submit(&mut st, Record::Truncate { group, after }, drops, None);
        Ok(())
    }

    /// Removes `group`'s entries up to and including `upto.index` (which may lie beyond the
    /// last entry, after a snapshot was installed) and remembers `upto` as the purge point.
    pub fn purge(&self, group: GroupId, upto: LogPos) -> Result<()> {
        let mut st = self.lock();
        st.check()?;
        let log = st.groups.entry(group).or_default();
        if log.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        let mut drops = BTreeMap::new();
        log.purge(upto, |loc| *drops.entry(loc.segment).or_insert(0) += 1);
        submit(&mut st, Record::Purge { group, upto }, drops, None);
        Ok(())
    }

    /// Saves `group`'s vote; `on_durable` runs once it is durable (in both modes: a vote must
    /// never be acknowledged before it is on disk).
    pub fn save_vote(
        &self,
        group: GroupId,
        vote: Bytes,
        on_durable: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        let mut st = self.lock();
        st.check()?;
        st.groups.entry(group).or_default().vote = Some(vote.clone());
        submit(
            &mut st,
            Record::Vote { group, data: vote },
            BTreeMap::new(),
            None,
        );
        let _ = st.tx.send(Msg::Flush(Box::new(on_durable)));
        Ok(())
    }

    /// The last vote saved for `group`.
    pub fn vote(&self, group: GroupId) -> Option<Bytes> {
        self.lock().groups.get(&group).and_then(|g| g.vote.clone())
    }

    /// Saves `group`'s committed log id; durable with the next batch.
    pub fn save_committed(&self, group: GroupId, committed: Bytes) -> Result<()> {
        let mut st = self.lock();
        st.check()?;
        st.groups.entry(group).or_default().committed = Some(committed.clone());
        submit(
            &mut st,
            Record::Committed {
                group,
                data: committed,
            },
            BTreeMap::new(),
            None,
        );
        Ok(())
    }

    /// The last committed log id saved for `group`.
    pub fn committed(&self, group: GroupId) -> Option<Bytes> {
        self.lock()
            .groups
            .get(&group)
            .and_then(|g| g.committed.clone())
    }

    /// The purge point and last entry of `group`.
    pub fn log_state(&self, group: GroupId) -> LogState {
        self.lock()
            .groups
            .get(&group)
            .map(GroupLog::state)
            .unwrap_or_default()
    }

    /// Groups with any state in the WAL.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut groups: Vec<_> = self
            .lock()
            .groups
            .iter()
            .filter(|(_, g)| !g.is_blank())
            .map(|(id, _)| *id)
            .collect();
        groups.sort_unstable();
        groups
    }

    /// Blocks until everything submitted so far is durable.
    pub fn flush(&self) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        {
            let st = self.lock();
            st.check()?;
            let _ = st.tx.send(Msg::Flush(Box::new(move |r| {
                let _ = tx.send(r);
            })));
        }
        rx.recv().unwrap_or(Err(Error::Shutdown))
    }

    /// Groups with live entries in the oldest segment, each with the first and the last index
    /// it has there: checkpointing them past that last index (then purging up to it) is what
    /// lets that segment be deleted.
    pub fn pinning_groups(&self) -> Vec<(GroupId, u64, u64)> {
        let st = self.lock();
        let oldest = st
            .groups
            .values()
            .filter_map(|g| g.locs.front().map(|l| l.segment))
            .min();
        let Some(oldest) = oldest else {
            return Vec::new();
        };
        let mut out: Vec<_> = st
            .groups
            .iter()
            .filter(|(_, g)| g.locs.front().is_some_and(|l| l.segment == oldest))
            .map(|(id, g)| {
                // Segments fill in order, so the group's entries there are a prefix of its log.
                let there = g.locs.iter().take_while(|l| l.segment == oldest).count() as u64;
                (*id, g.first, g.first + there - 1)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Counters for status and benchmarks.
    pub fn stats(&self) -> WalStats {
        let st = self.lock();
        let c = &self.shared().counters;
        WalStats {
            segments: st.files.len() as u64,
            bytes: st.sizes.values().sum(),
            entries_appended: c.entries.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            groups: st.groups.values().filter(|g| !g.is_blank()).count() as u64,
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            fsync_latency: c.fsync_latency.read(),
        }
    }

    /// Flushes everything and stops the writer. Later calls on any clone fail with `Shutdown`.
    pub fn shutdown(&self) -> Result<()> {
        stop(&self.inner.shared, &self.inner.writer)
    }
}
