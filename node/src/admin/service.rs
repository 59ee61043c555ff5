//! `islab.v1.Admin`: cluster initialisation, membership, shards, status.
//!
//! The cluster's node list is the meta group's membership, so membership changes go through
//! the meta leader and follow openraft's rules: a node joins as a learner and `MemberAdd`
//! returns once it has caught up; `MemberPromote` makes it a voter; one change at a time. Data
//! replicas then move onto the new node by themselves (see `controller`). `MemberRemove`
//! first marks the node draining and answers UNAVAILABLE ("retry") until its replicas have
//! moved off; only then does the node leave the meta group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use islab_proto::v1::admin_server::Admin;
use islab_proto::v1::{
    CreateShardsRequest, CreateShardsResponse, InitRequest, InitResponse, Member, MemberAddRequest,
    MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MoveReplicaRequest,
    MoveReplicaResponse, SetFailpointRequest, SetFailpointResponse, ShardListRequest,
    ShardListResponse, StatusRequest, StatusResponse, TransferLeaderRequest,
    TransferLeaderResponse,
};
use islab_raft::{MembershipChange, Node};
use islab_shardmap::ShardMap;
use tonic::{Request, Response, Status};

use crate::admin::status::{local_status, members};
use crate::admin::{membership, shard_list};
use crate::error::{Error, Result};
use crate::meta;
use crate::node_state::{META_GROUP, NodeState};
use crate::shard::Shard;

/// Shards a cluster gets when init does not say.
pub const DEFAULT_SHARDS: u32 = 8;
/// Replicas per shard when init does not say (capped by the number of nodes).
pub const DEFAULT_REPLICATION: u32 = 3;
/// How long a replica move may take to catch the new replica up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct AdminService {
    pub node: Arc<NodeState>,
}

impl AdminService {
    fn data(&self) -> Result<Arc<Shard>> {
        self.node.shard(META_GROUP)
    }

    /// Refuses a membership change unless this node leads (the error carries the leader).
    fn leader(&self) -> Result<Arc<Shard>> {
        let shard = self.data()?;
        Self::led(shard, self.node.id())
    }

    /// `shard` if this node leads it, else a not-leader error naming the leader.
    fn led(shard: Arc<Shard>, me: u64) -> Result<Arc<Shard>> {
        if !shard.raft.is_leader(me) {
            return Err(Error::NotLeader {
                leader: shard.leader_addr(),
            });
        }
        Ok(shard)
    }

    fn member_list(shard: &Shard) -> Vec<Member> {
        members(shard).0
    }

    /// Data shard `id`, if this node leads it (awake: a change follows).
    async fn led_shard(&self, id: u64) -> Result<Arc<Shard>> {
        if id == META_GROUP {
            return Err(Error::InvalidArgument("shard ids start at 1".into()));
        }
        let shard = self.node.shard(id).map_err(|_| self.not_here(id))?;
        let shard = Self::led(shard, self.node.id())?;
        shard.awake().await?;
        Ok(shard)
    }

    /// A request for a shard this node holds no replica of: point at one that does.
    fn not_here(&self, shard: u64) -> Error {
        let hint = self.node.map().and_then(|map| {
            let nodes = self.node.nodes();
            map.shard(shard)?
                .replicas
                .iter()
                .filter(|r| **r != self.node.id())
                .find_map(|r| nodes.get(r).cloned())
        });
        match hint {
            Some(leader) => Error::NotLeader {
                leader: Some(leader),
            },
            None => Error::NoSuchGroup(shard),
        }
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
        let shards = if r.shards == 0 {
            DEFAULT_SHARDS
        } else {
            r.shards
        };
        let replication = if r.replication == 0 {
            DEFAULT_REPLICATION
        } else {
            r.replication
        };
        let ids: Vec<u64> = nodes.keys().copied().collect();
        // Checked before anything is written, so a bad request leaves no trace.
        ShardMap::new(shards, replication, &ids).map_err(Error::InvalidArgument)?;
        let shard = self.data()?;
        let unfinished = self.node.cluster.get().filter(|_| {
            !shard.is_fresh()
                && self.node.map().is_none()
                && matches!(meta::read_map(&shard), Ok(None))
        });
        let cluster_id = match unfinished {
            // An init that stopped before the shards were created: finish it.
            Some(id) => id,
            None => membership::init_meta(&self.node, &shard, nodes).await?,
        };
        // The first shard map is written by the meta leader, wherever the election put it.
        let create = CreateShardsRequest {
            shards,
            replication,
            nodes: ids,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let outcome = match shard.leader_addr() {
                Some(addr) => match self.node.peers.admin(&addr) {
                    Ok(mut admin) => admin
                        .create_shards(create.clone())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.message().to_string()),
                    Err(e) => Err(e),
                },
                None => Err("no meta leader yet".to_string()),
            };
            match outcome {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Unavailable(format!(
                        "the cluster is initialised but its shards are not created yet ({e}); \
                         the meta leader creates them when asked again: retry init"
                    ))
                    .into());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "creating the shards");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        tracing::info!(
            cluster = %cluster_id,
            members = r.members.len(),
            shards,
            replication,
            "initialised cluster"
        );
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
        membership::probe(&self.node, r.id, &r.addr).await?;
        shard
            .raft
            .add_learner(r.id, r.addr, true)
            .await
            .map_err(Error::from)?;
        // A node that comes back under the id of one removed earlier takes replicas again.
        membership::undrain(&shard, r.id).await?;
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
            .change_membership(MembershipChange::AddVoters(BTreeSet::from([id])))
            .await
            .map_err(Error::from)?;
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
        if Self::member_list(&shard).iter().any(|m| m.id == id) {
            membership::drain(&shard, id).await?;
        }
        let change = match Self::member_list(&shard).iter().find(|m| m.id == id) {
            // Idempotent: already gone (perhaps by this very request, resent).
            None => {
                return Ok(Response::new(MemberRemoveResponse {
                    members: Self::member_list(&shard),
                }));
            }
            Some(m) if m.voter => MembershipChange::RemoveVoters(BTreeSet::from([id])),
            Some(_) => MembershipChange::RemoveNodes(BTreeSet::from([id])),
        };
        shard
            .raft
            .change_membership(change)
            .await
            .map_err(Error::from)?;
        // The node is gone: it need not be marked draining any more. Best effort: the removal
        // itself is done (if this node removed itself it leads no more), and a stale entry only
        // names a node that is no member.
        if let Err(e) = membership::undrain(&shard, id).await {
            tracing::warn!(node = id, error = %e, "clearing the draining mark");
        }
        Ok(Response::new(MemberRemoveResponse {
            members: Self::member_list(&shard),
        }))
    }

    async fn shard_list(
        &self,
        _req: Request<ShardListRequest>,
    ) -> Result<Response<ShardListResponse>, Status> {
        Ok(Response::new(shard_list::gather(&self.node).await?))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let r = req.into_inner();
        let shard = self.led_shard(r.shard).await?;
        if r.to == self.node.id() {
            return Ok(Response::new(TransferLeaderResponse { leader_id: r.to }));
        }
        let voters = shard.raft.metrics().voters;
        if !voters.contains(&r.to) {
            return Err(Error::Rejected(format!(
                "node {} holds no voting replica of shard {} (voters: {voters:?})",
                r.to, r.shard
            ))
            .into());
        }
        shard
            .raft
            .transfer_leader(r.to)
            .await
            .map_err(Error::from)?;
        let mut metrics = shard.raft.watch();
        let moved = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if metrics.get().leader == Some(r.to) {
                    return true;
                }
                if !metrics.changed().await {
                    return false;
                }
            }
        })
        .await;
        match moved {
            Ok(true) => Ok(Response::new(TransferLeaderResponse { leader_id: r.to })),
            _ => Err(Error::Unavailable(format!(
                "node {} did not take over shard {} in time",
                r.to, r.shard
            ))
            .into()),
        }
    }

    async fn move_replica(
        &self,
        req: Request<MoveReplicaRequest>,
    ) -> Result<Response<MoveReplicaResponse>, Status> {
        let r = req.into_inner();
        let shard = self.led_shard(r.shard).await?;
        let membership = || {
            let m = shard.raft.metrics();
            let nodes: BTreeSet<u64> = m.nodes.keys().copied().collect();
            (m.voters, nodes)
        };
        if r.add != 0 && !membership().1.contains(&r.add) {
            if r.add_addr.is_empty() {
                return Err(
                    Error::InvalidArgument("a replica to add needs its address".into()).into(),
                );
            }
            let add = shard.raft.add_learner(r.add, r.add_addr, true);
            match tokio::time::timeout(CATCH_UP_TIMEOUT, add).await {
                Ok(result) => result.map_err(Error::from)?,
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "node {} did not catch up with shard {} within {CATCH_UP_TIMEOUT:?}",
                        r.add, r.shard
                    ))
                    .into());
                }
            }
        }
        let (voters, _) = membership();
        let mut want = voters.clone();
        if r.add != 0 {
            want.insert(r.add);
        }
        if r.remove != 0 {
            want.remove(&r.remove);
        }
        if want.is_empty() {
            return Err(
                Error::Rejected(format!("shard {} would have no replica left", r.shard)).into(),
            );
        }
        if want != voters {
            shard
                .raft
                .change_membership(MembershipChange::ReplaceAllVoters(want.clone()))
                .await
                .map_err(Error::from)?;
        }
        Ok(Response::new(MoveReplicaResponse {
            voters: want.into_iter().collect(),
        }))
    }

    async fn create_shards(
        &self,
        req: Request<CreateShardsRequest>,
    ) -> Result<Response<CreateShardsResponse>, Status> {
        let r = req.into_inner();
        let meta = self.leader()?;
        let nodes = meta::members(&meta);
        let map = match meta::read_map(&meta)? {
            Some((map, _)) if map.shards.len() == r.shards as usize => map,
            Some((map, _)) => {
                return Err(Error::Rejected(format!(
                    "the cluster already has {} shards",
                    map.shards.len()
                ))
                .into());
            }
            None => {
                let map = ShardMap::new(r.shards, r.replication, &r.nodes)
                    .map_err(Error::InvalidArgument)?;
                if let Some(unknown) = r.nodes.iter().find(|n| !nodes.contains_key(n)) {
                    return Err(
                        Error::InvalidArgument(format!("node {unknown} is not a member")).into(),
                    );
                }
                if !meta::propose_map(&meta, None, &map).await? {
                    return Err(Error::Unavailable("the shard map changed; retry".into()).into());
                }
                map
            }
        };
        Ok(Response::new(CreateShardsResponse {
            map: Some(islab_proto::v1::ShardMap::from_map(&map, &nodes)),
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(local_status(&self.node)))
    }

    async fn set_failpoint(
        &self,
        req: Request<SetFailpointRequest>,
    ) -> Result<Response<SetFailpointResponse>, Status> {
        set_failpoint(req.get_ref())?;
        Ok(Response::new(SetFailpointResponse {}))
    }
}

/// Sets one failpoint (see `islab_storage::failpoints`); only in a failpoints build.
#[cfg(feature = "failpoints")]
fn set_failpoint(req: &SetFailpointRequest) -> Result<(), Status> {
    if !islab_storage::failpoints::NAMES.contains(&req.name.as_str()) {
        return Err(Status::invalid_argument(format!(
            "unknown failpoint {:?}; known: {}",
            req.name,
            islab_storage::failpoints::NAMES.join(", ")
        )));
    }
    if req.actions.is_empty() || req.actions == "off" {
        fail::remove(&req.name);
    } else {
        fail::cfg(&req.name, &req.actions).map_err(|e| {
            Status::invalid_argument(format!("failpoint {}: bad actions: {e}", req.name))
        })?;
    }
    tracing::warn!(name = %req.name, actions = %req.actions, "failpoint set");
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
fn set_failpoint(_req: &SetFailpointRequest) -> Result<(), Status> {
    Err(Status::unimplemented("built without failpoints"))
}
