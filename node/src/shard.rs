//! One Raft group on this node: its `Raft` handle and its memory store, and the translation of
//! openraft's answers into this crate's errors.
//!
//! The node keeps its groups in a registry keyed by group id (a single data group today; the
//! sharding work adds many), and every service reaches a group through it.

use islab_raft::{LogId, Raft, StoreSlot, TypeConfig};
use islab_storage::{GroupId, Request, Response};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};

use crate::error::{Error, Result};
use crate::read_batcher::ReadBatcher;

/// A running Raft group.
pub(crate) struct Shard {
    pub group: GroupId,
    pub raft: Raft,
    pub store: StoreSlot,
    pub reads: ReadBatcher,
}

impl Shard {
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
        self.reads.wait(self.group, &self.raft).await
    }
}
