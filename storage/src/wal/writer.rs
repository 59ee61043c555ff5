//! The WAL writer: one thread that owns the active segment and turns a queue of submissions
//! into group commits.
//!
//! Each turn it takes everything queued (so while one fdatasync runs, the next batch gathers),
//! writes it with one `write` per segment, fdatasyncs once, and only then runs the callbacks.
//! It also rotates segments (syncing the old one first, so every segment but the last is fully
//! durable — recovery relies on that to tell a torn tail from corruption), evicts written
//! payloads from the cache, and deletes segments no group needs any more.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::fs::WalFile;
use crate::wal::segment::{SEGMENT_HEADER_LEN, encode_header, segment_path};
use crate::wal::shared::{CACHE_OVERHEAD, Msg, Shared};

/// Most messages taken in one turn; bounds the latency of the first one in a burst.
const MAX_BATCH: usize = 8192;

pub(crate) fn spawn(
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    current: (u64, Arc<dyn WalFile>),
    live: BTreeMap<u64, u64>,
) -> Result<JoinHandle<()>> {
    let len = shared.state.lock().unwrap().active_len;
    let mut writer = Writer {
        shared,
        current,
        position: len,
        live,
        failed: None,
        dirty: false,
        last_sync: Instant::now(),
    };
    std::thread::Builder::new()
        .name("islab-wal-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| Error::io("spawning the WAL writer", e))
}

struct Writer {
    shared: Arc<Shared>,
    current: (u64, Arc<dyn WalFile>),
    /// Bytes written into the current segment.
    position: u64,
    live: BTreeMap<u64, u64>,
    failed: Option<String>,
    dirty: bool,
    last_sync: Instant,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        let interval = self.shared.config.sync_interval;
        loop {
            let first = if self.dirty {
                let wait = interval.saturating_sub(self.last_sync.elapsed());
                match rx.recv_timeout(wait.max(Duration::from_micros(100))) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.failed.is_none() {
                            match self.sync() {
                                Ok(()) => self.collect_garbage(),
                                Err(e) => self.fail(e.to_string()),
                            }
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            if self.turn(batch) {
                break;
            }
        }
    }

    /// Processes one batch; returns true on shutdown.
    fn turn(&mut self, batch: Vec<Msg>) -> bool {
        let mut acks = Vec::new();
        let mut flushes = Vec::new();
        let mut shutdown = None;
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_at = self.position;
        let mut result: Result<()> = Ok(());
        for msg in batch {
            match msg {
                Msg::Op(op) => {
                    if let Some(done) = op.done {
                        acks.push(done);
                    }
                    if result.is_err() || self.failed.is_some() {
                        continue;
                    }
                    if op.segment != self.current.0 {
                        result = self
                            .write(&pending, pending_at)
                            .and_then(|_| self.rotate(op.segment));
                        pending.clear();
                        pending_at = self.position;
                        if result.is_err() {
                            continue;
                        }
                    }
                    if op.offset != pending_at + pending.len() as u64 {
                        result = Err(Error::WalFailed {
                            reason: format!(
                                "internal: frames for segment {} at offset {} but the writer is at {}",
                                op.segment,
                                op.offset,
                                pending_at + pending.len() as u64
                            ),
                        });
                        continue;
                    }
                    pending.extend_from_slice(&op.bytes);
                    *self.live.entry(op.segment).or_default() += op.adds;
                    for (segment, n) in op.drops {
                        if let Some(count) = self.live.get_mut(&segment) {
                            *count = count.saturating_sub(n);
                        }
                    }
                    self.shared
                        .counters
                        .entries
                        .fetch_add(op.adds, Ordering::Relaxed);
                }
                Msg::Flush(done) => flushes.push(done),
                Msg::Shutdown(done) => shutdown = Some(done),
            }
        }
        if result.is_ok() && self.failed.is_none() {
            result = self.write(&pending, pending_at);
        }
        let must_sync = self.shared.config.durability == Durability::Sync
            || !flushes.is_empty()
            || shutdown.is_some()
            || self.last_sync.elapsed() >= self.shared.config.sync_interval;
        let mut synced = false;
        if result.is_ok() && self.failed.is_none() && must_sync && self.dirty {
            result = self.sync();
            synced = result.is_ok();
        }
        if let Err(e) = result {
            self.fail(e.to_string());
        }
        self.shared.counters.batches.fetch_add(1, Ordering::Relaxed);

        let failed = self.failed.clone();
        let outcome = || match &failed {
            Some(reason) => Err(Error::WalFailed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        };
        for done in acks.into_iter().chain(flushes) {
            done(outcome());
        }
        if failed.is_none() {
            self.evict();
            if synced {
                self.collect_garbage();
            }
        }
        if let Some(done) = shutdown {
            done(outcome());
            return true;
        }
        false
    }

    fn write(&mut self, buf: &[u8], at: u64) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        crate::failpoint!("wal::before_write", |_| Err(Error::io(
            format!(
                "writing {}",
                segment_path(&self.shared.dir, self.current.0).display()
            ),
            crate::failpoints::injected_error("wal::before_write")
        )));
        self.current.1.write_at(buf, at).map_err(|e| {
            Error::io(
                format!(
                    "writing {}",
                    segment_path(&self.shared.dir, self.current.0).display()
                ),
                e,
            )
        })?;
        self.position = at + buf.len() as u64;
        self.dirty = true;
        self.shared
            .counters
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.shared
            .state
            .lock()
            .unwrap()
            .sizes
            .insert(self.current.0, self.position);
        crate::failpoint!("wal::after_write", |_| Err(Error::io(
            format!(
                "writing {}",
                segment_path(&self.shared.dir, self.current.0).display()
            ),
            crate::failpoints::injected_error("wal::after_write")
        )));
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            // Never fsync again after a failure: a later success would not mean the earlier
            // writes are on disk (the page cache may have dropped them).
            return Err(Error::WalFailed {
                reason: reason.clone(),
            });
        }
        if self.dirty {
            crate::failpoint!("wal::before_fsync", |_| Err(Error::io(
                format!(
                    "fdatasync of {}",
                    segment_path(&self.shared.dir, self.current.0).display()
                ),
                crate::failpoints::injected_error("wal::before_fsync")
            )));
            let started = std::time::Instant::now();
            self.current.1.sync_data().map_err(|e| {
                Error::io(
                    format!(
                        "fdatasync of {}",
                        segment_path(&self.shared.dir, self.current.0).display()
                    ),
                    e,
                )
            })?;
            self.shared.counters.fsync_latency.record(started.elapsed());
            self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            crate::failpoint!("wal::after_fsync", |_| Err(Error::io(
                format!(
                    "fdatasync of {}",
                    segment_path(&self.shared.dir, self.current.0).display()
                ),
                crate::failpoints::injected_error("wal::after_fsync")
            )));
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the current segment (fully synced) and starts segment `seq`.
    fn rotate(&mut self, seq: u64) -> Result<()> {
        self.sync()?;
        let dir = &self.shared.dir;
        let path = segment_path(dir, seq);
        let fs = &self.shared.fs;
        let file = fs
            .create(&path)
            .and_then(|f| {
                // The header is made durable on its own, before any record follows it, so a
                // power cut can never leave records behind a header that did not make it.
                f.write_at(&encode_header(seq), 0)?;
                f.sync_data()?;
                Ok(f)
            })
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
        {
            let mut st = self.shared.state.lock().unwrap();
            st.files.insert(seq, file.clone());
            st.sizes.insert(seq, SEGMENT_HEADER_LEN as u64);
        }
        self.live.entry(seq).or_default();
        self.current = (seq, file);
        self.position = SEGMENT_HEADER_LEN as u64;
        self.dirty = true;
        Ok(())
    }

    /// Deletes segments no group needs; call right after an fsync covered everything written.
    fn collect_garbage(&mut self) {
        if let Err(e) = collect_garbage(&self.shared, &mut self.live, self.current.0) {
            tracing::warn!(error = %e, "WAL segment GC failed; will retry");
        }
    }

    /// Drops cached payloads that are on disk, oldest first, down to the budget.
    fn evict(&self) {
        let budget = self.shared.config.cache_bytes;
        let written = (self.current.0, self.position);
        let mut st = self.shared.state.lock().unwrap();
        while st.cache_bytes > budget {
            let Some(&(group, index, segment, offset, size)) = st.cache.front() else {
                break;
            };
            if (segment, offset) >= written {
                break;
            }
            st.cache.pop_front();
            st.cache_bytes -= size + CACHE_OVERHEAD;
            if let Some(loc) = st.groups.get_mut(&group).and_then(|g| g.get_mut(index))
                && loc.segment == segment
                && loc.offset == offset
            {
                loc.cached = None;
            }
        }
    }

    /// Stops the WAL for good: no later submission is acknowledged.
    fn fail(&mut self, reason: String) {
        tracing::error!(%reason, "WAL writer failed; refusing all further writes");
        self.shared.state.lock().unwrap().failed = Some(reason.clone());
        self.failed = Some(reason);
        self.dirty = false;
    }
}

/// Deletes the oldest segments while no group has a live entry in them. Call only when every
/// record written so far is durable (the purges that emptied them must not be lost).
pub(crate) fn collect_garbage(
    shared: &Shared,
    live: &mut BTreeMap<u64, u64>,
    active: u64,
) -> Result<()> {
    let mut removed = Vec::new();
    while let Some((&seq, &count)) = live.first_key_value() {
        if seq >= active || count > 0 {
            break;
        }
        live.pop_first();
        removed.push(seq);
    }
    if removed.is_empty() {
        return Ok(());
    }
    let dir: &Path = &shared.dir;
    for seq in &removed {
        let path = segment_path(dir, *seq);
        {
            let mut st = shared.state.lock().unwrap();
            st.files.remove(seq);
            st.sizes.remove(seq);
        }
        if let Err(e) = shared.fs.remove(&path) {
            tracing::warn!(file = %path.display(), error = %e, "could not delete WAL segment");
        }
    }
    tracing::debug!(segments = ?removed, "deleted WAL segments no group needs");
    shared
        .fs
        .sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}
