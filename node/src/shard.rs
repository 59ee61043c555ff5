//! One Raft group on this node: its [`Group`] handle, its memory store, and what the node
//! keeps beside them (gathered writes, shared read rounds, quiescence, counters).
//!
//! The node keeps its groups in a registry keyed by group id (the meta group 0 and the data
//! shards it holds replicas of), and every service reaches a group through it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use islab_raft::{Group, StoreSlot};
use islab_storage::{GroupId, Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Result;

pub(crate) mod quiet;
pub(crate) mod read_batcher;
pub(crate) mod write_gatherer;

use quiet::Quiet;
use read_batcher::ReadBatcher;
use write_gatherer::{GatherLimits, WriteGatherer};

/// A running Raft group.
pub(crate) struct Shard {
    pub group: GroupId,
    pub raft: Group,
    pub store: StoreSlot,
    pub reads: ReadBatcher,
    /// Client writes, gathered into shared entries.
    pub writes: WriteGatherer,
    /// Cancelled when the group is stopped on purpose (its replica moved away).
    pub stopping: CancellationToken,
    /// (when, applied index, entries applied per second) at the last sample.
    rate: Mutex<(Instant, u64, f64)>,
    /// Quiescence: paused heartbeats (leader), held elections (follower).
    pub quiet: Quiet,
    /// Set once the group is known to have been initialised.
    founded: std::sync::atomic::AtomicBool,
    /// Read requests answered, and keys they asked for (see [`Shard::count_read`]).
    read_requests: AtomicU64,
    keys_read: AtomicU64,
    /// New leaders this node saw in the group since it started here (the first included).
    pub leader_changes: AtomicU64,
}

impl Shard {
    /// `drivers` tracks the tasks that drive its read rounds and write entries.
    pub fn new(
        group: GroupId,
        raft: Group,
        store: StoreSlot,
        gather: GatherLimits,
        drivers: TaskTracker,
    ) -> Shard {
        Shard {
            group,
            raft,
            store,
            reads: ReadBatcher::new(drivers.clone()),
            writes: WriteGatherer::new(group, gather, drivers),
            stopping: CancellationToken::new(),
            rate: Mutex::new((Instant::now(), 0, 0.0)),
            quiet: Quiet::default(),
            founded: std::sync::atomic::AtomicBool::new(false),
            read_requests: AtomicU64::new(0),
            keys_read: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
        }
    }

    /// Counts one read request of `keys` keys answered by this replica.
    pub fn count_read(&self, keys: usize) {
        self.read_requests.fetch_add(1, Ordering::Relaxed);
        self.keys_read.fetch_add(keys as u64, Ordering::Relaxed);
    }

    /// (read requests, keys read) since the node started.
    pub fn reads_served(&self) -> (u64, u64) {
        (
            self.read_requests.load(Ordering::Relaxed),
            self.keys_read.load(Ordering::Relaxed),
        )
    }

    /// Entries applied per second, as of the last [`Shard::sample_rate`].
    pub fn ops_per_sec(&self) -> f64 {
        self.rate.lock().unwrap().2
    }

    /// Updates the applied rate; called about once a second.
    pub fn sample_rate(&self) {
        let applied = self.raft.metrics().last_applied.unwrap_or(0);
        let mut rate = self.rate.lock().unwrap();
        let (at, before, _) = *rate;
        let secs = at.elapsed().as_secs_f64();
        if secs >= 0.5 {
            let per_sec = if before == 0 || applied < before {
                0.0
            } else {
                (applied - before) as f64 / secs
            };
            *rate = (Instant::now(), applied, per_sec);
        }
    }

    /// Whether the group was ever initialised (a fresh group has no log, no vote, no members).
    /// Once it is not, it never is again, and the answer is remembered.
    pub fn is_fresh(&self) -> bool {
        if self.founded.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let fresh = self.raft.metrics().is_fresh();
        if !fresh {
            self.founded
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        fresh
    }
    /// Whether node `me` (this node) leads the group now, as far as it knows.
    pub fn is_leader(&self, me: u64) -> bool {
        self.raft.is_leader(me)
    }

    /// The leader's address as this node knows it.
    pub fn leader_addr(&self) -> Option<String> {
        self.raft.metrics().leader_addr()
    }

    /// Proposes `request` (gathered with other writes of the group into one entry, see
    /// `write_gatherer`) and waits until it is committed and applied here. Returns its answer
    /// and its version.
    pub async fn write(&self, request: Request) -> Result<(Response, u64)> {
        self.wake();
        self.writes.write(&self.raft, request).await
    }

    /// Resumes heartbeats if they were paused (see `quiesce`): before every request.
    pub fn wake(&self) {
        self.quiet.wake(&self.raft);
    }

    /// Wakes the group and, if this node leads it, makes sure it may append: see
    /// [`Group::renew_lease`]. Called before a membership change.
    pub async fn awake(&self) -> Result<()> {
        self.wake();
        Ok(self.raft.renew_lease().await?)
    }

    /// Waits until this node may serve a linearizable read: it is the leader, a quorum
    /// confirmed that after the read arrived, and everything committed by then is applied.
    /// Reads share confirmation rounds (see `read_batcher`).
    pub async fn linearizable(&self) -> Result<()> {
        self.wake();
        self.reads.wait(&self.raft).await
    }
}
