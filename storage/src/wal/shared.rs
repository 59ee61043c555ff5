//! What the WAL's handles and its writer thread share: the state under one lock, the queue
//! between them, and the counters.
//!
//! Apart from both so that neither depends on the other: [`crate::wal::Wal`] reserves space
//! and queues [`Op`]s under [`Shared::state`]; [`crate::wal::writer`] drains them, writes, syncs and
//! updates the same state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::GroupId;
use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, WalFile};
use crate::latency::LatencyHistogram;
use crate::wal::group_log::GroupLog;

/// Bookkeeping bytes charged to the cache budget per cached entry, so many tiny entries cannot
/// hold far more memory than the budget says.
pub(crate) const CACHE_OVERHEAD: usize = 64;

/// Called once with the fate of a submission: `Ok` when durable (sync) or written (async).
/// Callbacks run on the writer thread: they must be quick and must not wait on the WAL
/// (no `flush` from inside one).
pub type Callback = Box<dyn FnOnce(Result<()>) + Send + 'static>;

#[derive(Default)]
pub(crate) struct Counters {
    pub entries: AtomicU64,
    pub fsyncs: AtomicU64,
    pub batches: AtomicU64,
    /// Bytes written to segment files (frames and headers).
    pub bytes_written: AtomicU64,
    pub fsync_latency: LatencyHistogram,
}

/// State shared by handles and the writer.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub config: WalConfig,
    pub state: Mutex<State>,
    pub counters: Counters,
}

pub(crate) struct State {
    pub groups: HashMap<GroupId, GroupLog>,
    /// Segment receiving new frames and the bytes reserved in it (header included).
    pub active: u64,
    pub active_len: u64,
    /// Open segment files, for reads. The writer adds new ones; GC removes deleted ones.
    pub files: BTreeMap<u64, Arc<dyn WalFile>>,
    /// Sizes of segment files (for stats).
    pub sizes: BTreeMap<u64, u64>,
    /// Cached payloads in submission order: (group, index, segment, offset, bytes).
    pub cache: VecDeque<(GroupId, u64, u64, u64, usize)>,
    pub cache_bytes: usize,
    pub segment_size: u64,
    pub failed: Option<String>,
    pub closed: bool,
    pub tx: mpsc::Sender<Msg>,
}

impl State {
    /// `Err` once the WAL failed or was shut down: nothing more may be queued.
    pub fn check(&self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::WalFailed {
                reason: reason.clone(),
            });
        }
        if self.closed {
            return Err(Error::Shutdown);
        }
        Ok(())
    }
}

/// Frames for one segment at one offset, and what they change.
pub(crate) struct Op {
    pub segment: u64,
    pub offset: u64,
    pub bytes: Vec<u8>,
    /// Entries these frames add to `segment`.
    pub adds: u64,
    /// (segment, entries) that stop being live once these frames are written.
    pub drops: Vec<(u64, u64)>,
    pub done: Option<Callback>,
}

pub(crate) enum Msg {
    Op(Op),
    /// Run the callback once everything before it is durable (forces an fsync in async mode).
    Flush(Callback),
    /// Flush, run the callback, exit.
    Shutdown(Callback),
}
