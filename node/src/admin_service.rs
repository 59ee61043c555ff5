//! `islab.v1.Admin`: cluster initialisation, membership, status.
//!
//! Membership changes go through the data group's leader and follow openraft's rules: a node
//! joins as a learner and `MemberAdd` returns once it has caught up (from the log, or from a
//! checkpoint snapshot when the log it needs is purged); `MemberPromote` makes it a voter; one
//! change at a time (openraft refuses a second while one is in progress).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use islab_proto::v1::admin_client::AdminClient;
use islab_proto::v1::admin_server::Admin;
use islab_proto::v1::{
    GroupStatus, InitRequest, InitResponse, Member, MemberAddRequest, MemberAddResponse,
    MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse, StatusRequest, StatusResponse,
};
use islab_raft::Node;
use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{InitializeError, RaftError};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::node_state::{DATA_GROUP, NodeState};
use crate::shard::Shard;

pub(crate) struct AdminService {
    pub node: Arc<NodeState>,
}

/// The members of a group as its latest membership config says.
fn members(shard: &Shard) -> (Vec<Member>, u64) {
    let m = shard.raft.metrics().borrow_watched().clone();
    let config = m.membership_config.membership();
    let voters: BTreeSet<u64> = config.voter_ids().collect();
    let members = config
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    (members, m.current_leader.unwrap_or(0))
}

impl AdminService {
    fn data(&self) -> Result<Arc<Shard>> {
        self.node.shard(DATA_GROUP)
    }

    /// Refuses a membership change unless this node leads (the error carries the leader).
    fn leader(&self) -> Result<Arc<Shard>> {
        let shard = self.data()?;
        let m = shard.raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(self.node.id()) {
            return Err(Error::NotLeader {
                leader: shard.leader_addr(),
            });
        }
        Ok(shard)
    }

    /// Asks the node at `addr` who it is, so a wrong address or a node of another cluster is
    /// refused before it becomes a member.
    async fn probe(&self, id: u64, addr: &str) -> Result<()> {
        let unreachable =
            |e: String| Error::Rejected(format!("cannot reach node {id} at {addr} to add it: {e}"));
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = AdminClient::new(channel)
            .status(StatusRequest {})
            .await
            .map_err(|e| unreachable(e.message().to_string()))?
            .into_inner();
        if status.node_id != id {
            return Err(Error::Rejected(format!(
                "the node at {addr} is node {}, not node {id}",
                status.node_id
            )));
        }
        let ours = self.node.cluster.get().unwrap_or_default();
        if !status.cluster_id.is_empty() && status.cluster_id != ours {
            return Err(Error::Rejected(format!(
                "node {id} at {addr} belongs to another cluster ({}); give it an empty data directory",
                status.cluster_id
            )));
        }
        Ok(())
    }

    fn member_list(shard: &Shard) -> Vec<Member> {
        members(shard).0
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let r = req.into_inner();
        if r.members.is_empty() {
            return Err(Error::InvalidArgument("init needs at least one member".into()).into());
        }
        if !r.members.iter().any(|m| m.id == self.node.id()) {
            return Err(Error::InvalidArgument(format!(
                "init must be sent to one of the members; this is node {}",
                self.node.id()
            ))
            .into());
        }
        let mut nodes = BTreeMap::new();
        for m in &r.members {
            if m.id == 0 || m.addr.is_empty() {
                return Err(
                    Error::InvalidArgument(format!("member {m:?} needs an id and addr")).into(),
                );
            }
            if nodes
                .insert(
                    m.id,
                    Node {
                        addr: m.addr.clone(),
                    },
                )
                .is_some()
            {
                return Err(Error::InvalidArgument(format!("node {} listed twice", m.id)).into());
            }
        }
        let shard = self.data()?;
        let cluster_id = self.node.cluster.create()?;
        match shard.raft.initialize(nodes).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                return Err(Error::Rejected(format!("already initialised: {e}")).into());
            }
            Err(e) => {
                // Nothing was initialised: forget the id so a corrected init can be tried.
                self.node.cluster.abandon(&cluster_id)?;
                return Err(Error::Unavailable(format!("init failed: {e}")).into());
            }
        }
        tracing::info!(cluster = %cluster_id, members = r.members.len(), "initialised cluster");
        Ok(Response::new(InitResponse { cluster_id }))
    }

    async fn member_list(
        &self,
        _req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let shard = self.data()?;
        let (members, leader_id) = members(&shard);
        Ok(Response::new(MemberListResponse { members, leader_id }))
    }

    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        if r.id == 0 || r.addr.is_empty() {
            return Err(Error::InvalidArgument("member add needs an id and an addr".into()).into());
        }
        let shard = self.leader()?;
        // Idempotent, so a change resent after a lost answer succeeds.
        if let Some(m) = Self::member_list(&shard).iter().find(|m| m.id == r.id) {
            if m.addr == r.addr {
                return Ok(Response::new(MemberAddResponse {
                    members: Self::member_list(&shard),
                }));
            }
            return Err(Error::Rejected(format!(
                "node {} is already a member, at {}",
                r.id, m.addr
            ))
            .into());
        }
        self.probe(r.id, &r.addr).await?;
        shard
            .raft
            .add_learner(r.id, Node { addr: r.addr }, true)
            .await
            .map_err(|e| shard.write_error(e))?;
        Ok(Response::new(MemberAddResponse {
            members: Self::member_list(&shard),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        let shard = self.leader()?;
        match Self::member_list(&shard).iter().find(|m| m.id == id) {
            None => {
                return Err(Error::Rejected(format!(
                    "node {id} is not a member: add it first (islab member add)"
                ))
                .into());
            }
            Some(m) if m.voter => {
                // Idempotent: already done (perhaps by this very request, resent).
                return Ok(Response::new(MemberPromoteResponse {
                    members: Self::member_list(&shard),
                }));
            }
            Some(_) => {}
        }
        shard
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| shard.write_error(e))?;
        Ok(Response::new(MemberPromoteResponse {
            members: Self::member_list(&shard),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        let shard = self.leader()?;
        let change = match Self::member_list(&shard).iter().find(|m| m.id == id) {
            // Idempotent: already gone (perhaps by this very request, resent).
            None => {
                return Ok(Response::new(MemberRemoveResponse {
                    members: Self::member_list(&shard),
                }));
            }
            Some(m) if m.voter => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            Some(_) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        };
        shard
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| shard.write_error(e))?;
        Ok(Response::new(MemberRemoveResponse {
            members: Self::member_list(&shard),
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let stats = self.node.wal.stats();
        let groups = self
            .node
            .shards()
            .iter()
            .map(|shard| {
                let m = shard.raft.metrics().borrow_watched().clone();
                let store = shard.store.current();
                let (members, _) = members(shard);
                let wal_state = self.node.wal.log_state(shard.group);
                GroupStatus {
                    group_id: shard.group,
                    role: format!("{:?}", m.state).to_lowercase(),
                    leader_id: m.current_leader.unwrap_or(0),
                    leader_addr: shard.leader_addr().unwrap_or_default(),
                    term: m.current_term,
                    last_log_index: m.last_log_index.unwrap_or(0),
                    commit_index: m.local_committed.map_or(0, |c| c.index),
                    applied_index: m.last_applied.map_or(0, |a| a.index),
                    checkpoint_index: m.snapshot.map_or(0, |s| s.index),
                    purged_index: wal_state.purged.map_or(0, |p| p.index),
                    keys: store.user_keys(),
                    bytes: store.user_bytes(),
                    members,
                }
            })
            .collect();
        Ok(Response::new(StatusResponse {
            node_id: self.node.id(),
            addr: self.node.advertise.clone(),
            cluster_id: self.node.cluster.get().unwrap_or_default(),
            durability: self.node.config.wal.durability.to_string(),
            wal_bytes: stats.bytes,
            wal_segments: stats.segments,
            wal_fsyncs: stats.fsyncs,
            groups,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}
