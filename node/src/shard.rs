//! One Raft group on this node: its `Raft` handle and its memory store, and the translation of
//! openraft's answers into this crate's errors.
//!
//! The node keeps its groups in a registry keyed by group id (the meta group 0 and the data
//! shards it holds replicas of), and every service reaches a group through it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use islab_raft::{Raft, StoreSlot, TypeConfig};
use islab_storage::{GroupId, Request, Response};
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, ForwardReason, LinearizableReadError, RaftError};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::quiesce::Quiet;
use crate::read_batcher::ReadBatcher;
use crate::write_gatherer::{GatherLimits, WriteGatherer};

/// A running Raft group.
pub(crate) struct Shard {
    pub group: GroupId,
    pub raft: Raft,
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
}

impl Shard {
    pub fn new(group: GroupId, raft: Raft, store: StoreSlot, gather: GatherLimits) -> Shard {
        Shard {
            group,
            raft,
            store,
            reads: ReadBatcher::default(),
            writes: WriteGatherer::new(group, gather),
            stopping: CancellationToken::new(),
            rate: Mutex::new((Instant::now(), 0, 0.0)),
            quiet: Quiet::default(),
            founded: std::sync::atomic::AtomicBool::new(false),
            read_requests: AtomicU64::new(0),
            keys_read: AtomicU64::new(0),
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
        let applied = self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index);
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
        let m = self.raft.metrics().borrow_watched().clone();
        let fresh = m.last_log_index.is_none()
            && m.snapshot.is_none()
            && m.current_term == 0
            && m.membership_config
                .membership()
                .voter_ids()
                .next()
                .is_none();
        if !fresh {
            self.founded
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        fresh
    }
    /// Whether node `me` (this node) leads the group now, as far as it knows.
    pub fn is_leader(&self, me: u64) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(me)
    }

    /// The leader's address as this node knows it.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        m.membership_config
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// Proposes `request` (gathered with other writes of the group into one entry, see
    /// `write_gatherer`) and waits until it is committed and applied here. Returns its answer
    /// and its version.
    pub async fn write(&self, request: Request) -> Result<(Response, u64)> {
        self.wake();
        self.writes.write(&self.raft, request).await
    }

    pub fn write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        write_error(self.group, e)
    }

    /// Wakes the group and, if this node leads it, makes sure it may append: see
    /// [`renew_lease`]. Called before a membership change.
    pub async fn awake(&self) -> Result<()> {
        self.wake();
        renew_lease(self.group, &self.raft).await
    }

    /// Waits until this node may serve a linearizable read: it is the leader, a quorum
    /// confirmed that after the read arrived, and everything committed by then is applied.
    /// Reads share confirmation rounds (see `read_batcher`).
    pub async fn linearizable(&self) -> Result<()> {
        self.wake();
        self.reads.wait(self.group, &self.raft).await
    }
}

/// Makes sure a leader's quorum lease is fresh before it proposes an entry.
///
/// openraft refuses to append on a leader whose lease has run out — no quorum acknowledged
/// anything it sent for `election-timeout-max` (openraft `ForwardReason::LeaseExpired`, an
/// answer that names no leader). A quiescent group sends nothing, so its lease runs out while
/// it sleeps: the first write after a quiet spell used to fail with "not the leader" from the
/// leader itself. So when the last quorum acknowledgement is older than half the lease, one
/// read-index round renews it first (a heartbeat to every follower, answered by a quorum);
/// under load heartbeats and appends keep it fresh and this costs one metrics read. Not a
/// leader, or a leader that cannot reach a quorum: nothing to renew, and the proposal gets
/// openraft's own answer (a hint, or unavailable).
pub(crate) async fn renew_lease(group: GroupId, raft: &Raft) -> Result<()> {
    let fresh_within = raft.config().election_timeout_max / 2;
    let stale = {
        let m = raft.metrics();
        let m = m.borrow_watched();
        // A lone voter is its own quorum: openraft keeps its lease valid without acks.
        m.state == openraft::ServerState::Leader
            && m.membership_config
                .membership()
                .voter_ids()
                .nth(1)
                .is_some()
            && m.last_quorum_acked
                .as_ref()
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_millis(fresh_within))
    };
    if !stale {
        return Ok(());
    }
    tracing::debug!(group, "renewing the leader lease before proposing");
    match raft
        .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
        .await
    {
        Ok(_) => Ok(()),
        // Deposed meanwhile: the proposal will be refused with the new leader's address.
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => Ok(()),
        Err(RaftError::APIError(other)) => Err(Error::Unavailable(format!(
            "group {group}: could not confirm leadership with a quorum: {other}"
        ))),
        Err(RaftError::Fatal(f)) => Err(Error::Unavailable(format!(
            "group {group} is shut down: {f}"
        ))),
    }
}

/// openraft's answer to a write (or membership change) of `group`, as this crate's error.
pub(crate) fn write_error(
    group: GroupId,
    e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> Error {
    if let Some(fwd) = e.forward_to_leader() {
        if fwd.reason == ForwardReason::LeaseExpired {
            // Still the leader, not sure of it yet (renew_lease makes this rare): retryable.
            return Error::Unavailable(format!(
                "group {group}: the leader's lease expired and is being renewed; retry"
            ));
        }
        return Error::NotLeader {
            leader: fwd.leader_node.as_ref().map(|n| n.addr.clone()),
        };
    }
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Error::Rejected(c.to_string())
        }
        RaftError::APIError(other) => Error::Unavailable(other.to_string()),
        RaftError::Fatal(f) => Error::Unavailable(format!("group {group} is shut down: {f}")),
    }
}
