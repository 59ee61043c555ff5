//! One Raft group on this node: its `Raft` handle and its memory store, and the translation of
//! openraft's answers into this crate's errors.
//!
//! The node keeps its groups in a registry keyed by group id (the meta group 0 and the data
//! shards it holds replicas of), and every service reaches a group through it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use islab_raft::{LogId, Raft, StoreSlot, TypeConfig};
use islab_storage::{GroupId, Request, Response};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::quiesce::Quiet;
use crate::read_batcher::ReadBatcher;

/// A running Raft group.
pub(crate) struct Shard {
    pub group: GroupId,
    pub raft: Raft,
    pub store: StoreSlot,
    pub reads: ReadBatcher,
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
    pub fn new(group: GroupId, raft: Raft, store: StoreSlot, reads: ReadBatcher) -> Shard {
        Shard {
            group,
            raft,
            store,
            reads,
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

    /// Proposes `request` and waits until it is committed and applied here.
    pub async fn write(&self, request: Request) -> Result<(Response, LogId)> {
        self.wake();
        match self.raft.client_write(request).await {
            Ok(r) => Ok((r.data, r.log_id)),
            Err(e) => Err(self.write_error(e)),
        }
    }

    pub fn write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        if let Some(fwd) = e.forward_to_leader() {
            return Error::NotLeader {
                leader: fwd.leader_node.as_ref().map(|n| n.addr.clone()),
            };
        }
        match e {
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Error::Rejected(c.to_string())
            }
            RaftError::APIError(other) => Error::Unavailable(other.to_string()),
            RaftError::Fatal(f) => {
                Error::Unavailable(format!("group {} is shut down: {f}", self.group))
            }
        }
    }

    /// Waits until this node may serve a linearizable read: it is the leader, a quorum
    /// confirmed that after the read arrived, and everything committed by then is applied.
    /// Reads share confirmation rounds (see `read_batcher`).
    pub async fn linearizable(&self) -> Result<()> {
        self.wake();
        self.reads.wait(self.group, &self.raft).await
    }
}
