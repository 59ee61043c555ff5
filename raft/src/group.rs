//! [`Group`]: the handle of one running Raft group, and the one place openraft's answers become
//! this crate's [`Error`].
//!
//! A group is started from its log store (its entries in the node's WAL) and its state machine
//! (its memory store and checkpoints); from then on the node proposes, reads, changes
//! membership and pauses timers through this handle, and watches it through
//! [`GroupMetrics`]. openraft's generic error types never leave this file: each answer is
//! classified once (not the leader and who is, lease expired, unavailable, refused, stopped),
//! with the messages clients have always seen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use islab_storage::{GroupId, Request, Response};
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{
    ClientWriteError, ForwardReason, InitializeError, LinearizableReadError, RaftError,
};
use openraft::{ChangeMembers, ReadPolicy, ServerState, SnapshotPolicy};

use crate::error::Error;
use crate::group_metrics::{GroupMetrics, MetricsWatch};
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::state_machine::StateMachine;
use crate::type_config::{Node, NodeId, TypeConfig};

/// openraft's handle of one group, of our types.
type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// Raft timing and log settings, the same for every group of a node.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// This node's id.
    pub node: NodeId,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A checkpoint is cut after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind a checkpoint, for followers slightly behind.
    pub keep_entries_after_snapshot: u64,
}

impl GroupConfig {
    /// openraft's configuration for these settings, or why they do not fit together.
    fn openraft(&self) -> Result<openraft::Config, Error> {
        openraft::Config {
            cluster_name: "islab".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            max_payload_entries: 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))
    }

    /// Checks the settings without starting anything.
    pub fn validate(&self) -> Result<(), Error> {
        self.openraft().map(|_| ())
    }
}

/// A membership change of a group.
#[derive(Clone, Debug)]
pub enum MembershipChange {
    /// Learners (already added) become voters.
    AddVoters(BTreeSet<NodeId>),
    /// Voters leave the group.
    RemoveVoters(BTreeSet<NodeId>),
    /// Learners leave the group.
    RemoveNodes(BTreeSet<NodeId>),
    /// The voters become exactly these (joint consensus in between).
    ReplaceAllVoters(BTreeSet<NodeId>),
}

/// The handle of one running Raft group. Cheap to clone; every clone drives the same group.
#[derive(Clone)]
pub struct Group {
    id: GroupId,
    raft: Raft,
}

impl Group {
    /// Starts group `id` on this node: its log from `log_store`, its state from
    /// `state_machine`, its peers through `network`.
    pub async fn start(
        id: GroupId,
        config: &GroupConfig,
        network: NetworkFactory,
        log_store: LogStore,
        state_machine: StateMachine,
    ) -> Result<Group, Error> {
        let raft = Raft::new(
            config.node,
            Arc::new(config.openraft()?),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| Error::Start {
            group: id,
            reason: e.to_string(),
        })?;
        Ok(Group { id, raft })
    }

    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The group's state now.
    pub fn metrics(&self) -> GroupMetrics {
        GroupMetrics::from_raft(&self.raft.metrics().borrow_watched())
    }

    /// Follows the group's state as it changes.
    pub fn watch(&self) -> MetricsWatch {
        MetricsWatch {
            rx: self.raft.metrics(),
        }
    }

    /// Whether node `me` (this node) leads the group now, as far as it knows.
    pub fn is_leader(&self, me: NodeId) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(me)
    }

    /// Proposes `request` as one entry and waits until it is committed and applied here.
    /// Returns the entry's index and the state machine's answer.
    pub async fn write(&self, request: Request) -> Result<(u64, Response), Error> {
        match self.raft.client_write(request).await {
            Ok(written) => Ok((written.log_id.index, written.data)),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// One read-index round: returns once a quorum confirmed this node's leadership after the
    /// call and everything committed by then is applied here.
    pub async fn read_index(&self) -> Result<(), Error> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(fwd))) => {
                Err(Error::NotLeader {
                    group: self.id,
                    leader: fwd.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(other)) => Err(Error::Unavailable {
                group: self.id,
                reason: other.to_string(),
            }),
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Makes sure a leader's quorum lease is fresh before it proposes an entry.
    ///
    /// openraft refuses to append on a leader whose lease has run out — no quorum acknowledged
    /// anything it sent for `election-timeout-max` (openraft `ForwardReason::LeaseExpired`, an
    /// answer that names no leader). A quiescent group sends nothing, so its lease runs out
    /// while it sleeps: the first write after a quiet spell used to fail with "not the leader"
    /// from the leader itself. So when the last quorum acknowledgement is older than half the
    /// lease, one read-index round renews it first (a heartbeat to every follower, answered by
    /// a quorum); under load heartbeats and appends keep it fresh and this costs one metrics
    /// read. Not a leader, or a leader that cannot reach a quorum: nothing to renew, and the
    /// proposal gets openraft's own answer (a hint, or unavailable).
    pub async fn renew_lease(&self) -> Result<(), Error> {
        let fresh_within = Duration::from_millis(self.raft.config().election_timeout_max / 2);
        let stale = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            // A lone voter is its own quorum: openraft keeps its lease valid without acks.
            m.state == ServerState::Leader
                && m.membership_config
                    .membership()
                    .voter_ids()
                    .nth(1)
                    .is_some()
                && m.last_quorum_acked
                    .as_ref()
                    .is_none_or(|at| at.elapsed() >= fresh_within)
        };
        if !stale {
            return Ok(());
        }
        tracing::debug!(
            group = self.id,
            "renewing the leader lease before proposing"
        );
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            // Deposed meanwhile: the proposal will be refused with the new leader's address.
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => Ok(()),
            Err(RaftError::APIError(other)) => Err(Error::Unavailable {
                group: self.id,
                reason: format!(
                    "group {}: could not confirm leadership with a quorum: {other}",
                    self.id
                ),
            }),
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Initialises a fresh group with `members` as its voters.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Node>) -> Result<(), Error> {
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                Err(Error::AlreadyInitialised {
                    group: self.id,
                    reason: e.to_string(),
                })
            }
            Err(RaftError::APIError(e)) => Err(Error::Unavailable {
                group: self.id,
                reason: e.to_string(),
            }),
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Adds node `id` at `addr` as a learner; with `blocking`, waits until it caught up.
    pub async fn add_learner(&self, id: NodeId, addr: String, blocking: bool) -> Result<(), Error> {
        self.raft
            .add_learner(id, Node { addr }, blocking)
            .await
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    /// Changes the voters or removes learners; returns once the change is committed.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), Error> {
        let change: ChangeMembers<NodeId, Node> = match change {
            MembershipChange::AddVoters(ids) => ChangeMembers::AddVoterIds(ids),
            MembershipChange::RemoveVoters(ids) => ChangeMembers::RemoveVoters(ids),
            MembershipChange::RemoveNodes(ids) => ChangeMembers::RemoveNodes(ids),
            MembershipChange::ReplaceAllVoters(ids) => ChangeMembers::ReplaceAllVoters(ids),
        };
        self.raft
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    /// Asks the leader to hand leadership to `to`; watch the metrics to see it happen.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), Error> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|f| Error::Unavailable {
                group: self.id,
                reason: f.to_string(),
            })
    }

    /// Cuts a checkpoint now (in the background).
    pub async fn trigger_checkpoint(&self) -> Result<(), Error> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|f| self.stopped(f))
    }

    /// Purges the log up to `upto` (at most up to the last checkpoint).
    pub async fn purge_log(&self, upto: u64) -> Result<(), Error> {
        self.raft
            .trigger()
            .purge_log(upto)
            .await
            .map_err(|f| self.stopped(f))
    }

    /// Pauses (`false`) or resumes this node's heartbeats of the group, as its leader.
    pub fn enable_heartbeat(&self, enabled: bool) {
        self.raft.runtime_config().heartbeat(enabled);
    }

    /// Pauses (`false`) or resumes this node's election timer of the group, as a follower.
    pub fn enable_elect(&self, enabled: bool) {
        self.raft.runtime_config().elect(enabled);
    }

    /// Pauses (`false`) or resumes the group's timer ticks (every fifth of a heartbeat).
    pub fn enable_tick(&self, enabled: bool) {
        self.raft.runtime_config().tick(enabled);
    }

    /// Stops the group on this node; its log and checkpoints stay on disk.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.raft.shutdown().await.map_err(|e| self.stopped(e))
    }

    /// The openraft handle, for the transport's server side.
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    fn stopped(&self, reason: impl std::fmt::Display) -> Error {
        Error::Stopped {
            group: self.id,
            reason: reason.to_string(),
        }
    }

    /// openraft's answer to a write or membership change, as this crate's error.
    fn write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        let group = self.id;
        if let Some(fwd) = e.forward_to_leader() {
            if fwd.reason == ForwardReason::LeaseExpired {
                // Still the leader, not sure of it yet (renew_lease makes this rare).
                return Error::LeaseExpired { group };
            }
            return Error::NotLeader {
                group,
                leader: fwd.leader_node.as_ref().map(|n| n.addr.clone()),
            };
        }
        match e {
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Error::MembershipRefused {
                    group,
                    reason: c.to_string(),
                }
            }
            RaftError::APIError(other) => Error::Unavailable {
                group,
                reason: other.to_string(),
            },
            RaftError::Fatal(f) => self.stopped(f),
        }
    }
}
