//! What a group reports about itself, in IsLabDB's words rather than openraft's.
//!
//! openraft publishes a `RaftMetrics` on a watch channel after every state change. The node
//! reads a handful of its fields (who leads, how far the log and the state machine are, the
//! membership, how fresh the leader's quorum is); [`GroupMetrics`] is exactly that handful,
//! so the node never names an openraft type and an openraft bump that renames a field is a
//! change here only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::Instant as _;
use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::alias::WatchReceiverOf;

use crate::type_config::{Node, NodeId, TypeConfig};

/// A node's part in a group right now.
///
/// Formatted with `{:?}` and lowercased it is the role `islab cluster status` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    Follower,
    Learner,
    /// The group was shut down (on purpose, or because its storage failed).
    Shutdown,
}

/// One group's state as this node sees it, at one moment.
#[derive(Clone, Debug)]
pub struct GroupMetrics {
    pub role: Role,
    pub term: u64,
    /// The leader this node knows of (itself included).
    pub leader: Option<NodeId>,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// Highest index this node knows to be committed.
    pub committed: Option<u64>,
    /// Highest index applied to the state machine.
    pub last_applied: Option<u64>,
    /// Last index the current snapshot (checkpoint) covers.
    pub snapshot: Option<u64>,
    /// Highest index purged from the log.
    pub purged: Option<u64>,
    /// Voters of the latest membership config (applied or not).
    pub voters: BTreeSet<NodeId>,
    /// Every member of the latest membership config, voters and learners, with its address.
    pub nodes: BTreeMap<NodeId, Node>,
    /// As leader: each follower's last index known to match the leader's log.
    pub replication: Option<BTreeMap<NodeId, Option<u64>>>,
    /// As leader: how long ago a quorum last acknowledged this node's leadership.
    pub quorum_acked_ago: Option<Duration>,
    /// Why the group stopped for good, if it did.
    pub failure: Option<String>,
}

impl GroupMetrics {
    pub(crate) fn from_raft(m: &RaftMetrics<TypeConfig>) -> GroupMetrics {
        let membership = m.membership_config.membership();
        GroupMetrics {
            role: match m.state {
                openraft::ServerState::Leader => Role::Leader,
                openraft::ServerState::Candidate => Role::Candidate,
                openraft::ServerState::Follower => Role::Follower,
                openraft::ServerState::Learner => Role::Learner,
                openraft::ServerState::Shutdown => Role::Shutdown,
            },
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed: m.local_committed.map(|l| l.index),
            last_applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
            replication: m.replication.as_ref().map(|r| {
                r.iter()
                    .map(|(id, matched)| (*id, matched.map(|l| l.index)))
                    .collect()
            }),
            quorum_acked_ago: m.last_quorum_acked.as_ref().map(|at| at.elapsed()),
            failure: m.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }

    /// Whether the group was never initialised here: no log, no snapshot, no vote, no members.
    pub fn is_fresh(&self) -> bool {
        self.last_log_index.is_none()
            && self.snapshot.is_none()
            && self.term == 0
            && self.voters.is_empty()
    }

    /// The leader's address, when the leader is a member this node knows.
    pub fn leader_addr(&self) -> Option<String> {
        self.nodes.get(&self.leader?).map(|n| n.addr.clone())
    }
}

/// Follows a group's metrics as they change.
pub struct MetricsWatch {
    pub(crate) rx: WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>,
}

impl MetricsWatch {
    /// The metrics now.
    pub fn get(&self) -> GroupMetrics {
        GroupMetrics::from_raft(&self.rx.borrow_watched())
    }

    /// Waits for the next change; `false` once the group is gone and nothing will change.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}
