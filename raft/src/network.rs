//! The Raft network, client side: openraft's RPCs to peer nodes over gRPC.
//!
//! One tonic channel (one HTTP/2 connection) per peer *node* carries the traffic of every group
//! the two nodes share; each request names its cluster and group. openraft messages travel
//! encoded with the storage codec (bincode 2); a snapshot travels as its checkpoint file in
//! 1 MiB chunks, the first carrying the vote and the snapshot's metadata.
//!
//! Every failure is reported to openraft as `Unreachable`, so it backs off and retries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use islab_proto::raft::v1::{RaftReply, RaftRequest, SnapshotChunk};
use islab_storage::{Checkpoint, GroupId, codec};
use openraft::OptionalSend;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::peers::Peers;
use crate::type_config::{Node, NodeId, Snapshot, TypeConfig, Vote};

/// Bytes of checkpoint per snapshot chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// This node's cluster id as of now (`None` before it joined one): every message carries it.
pub type ClusterIdSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Makes openraft's per-target network clients for one group.
pub struct NetworkFactory {
    pub group: GroupId,
    pub from: NodeId,
    pub peers: Peers,
    pub cluster: ClusterIdSource,
    /// Deadline of one RPC. Not openraft's `hard_ttl` (the heartbeat interval): an
    /// AppendEntries includes the follower's fdatasync, and one slow fsync must not count as
    /// an unreachable peer (which makes openraft back off).
    pub rpc_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerNetwork {
        PeerNetwork {
            target,
            addr: node.addr.clone(),
            group: self.group,
            from: self.from,
            peers: self.peers.clone(),
            cluster: self.cluster.clone(),
            rpc_timeout: self.rpc_timeout,
        }
    }
}

/// openraft's view of one peer, for one group.
pub struct PeerNetwork {
    target: NodeId,
    addr: String,
    group: GroupId,
    from: NodeId,
    peers: Peers,
    cluster: ClusterIdSource,
    rpc_timeout: Duration,
}

fn unreachable(msg: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::from_string(msg.to_string())
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    TransferLeader,
}

impl PeerNetwork {
    fn request(&self, payload: Vec<u8>) -> RaftRequest {
        RaftRequest {
            cluster_id: (self.cluster)().unwrap_or_default(),
            group_id: self.group,
            from: self.from,
            payload: Bytes::from(payload),
        }
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, Unreachable<TypeConfig>> {
        let payload = codec::encode(req).map_err(unreachable)?;
        let mut client = self.peers.client(&self.addr).map_err(unreachable)?;
        let mut request = tonic::Request::new(self.request(payload));
        request.set_timeout(option.hard_ttl().max(self.rpc_timeout));
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::TransferLeader => client.transfer_leader(request).await,
        }
        .map_err(|s| {
            unreachable(format!(
                "node {} at {}: {}",
                self.target,
                self.addr,
                s.message()
            ))
        })?
        .into_inner();
        decode_reply(reply, self.target)
    }
}

/// Unpacks a reply: a transport-level refusal, or the encoded `Result` of the remote call.
pub(crate) fn decode_reply<Resp: DeserializeOwned>(
    reply: RaftReply,
    target: NodeId,
) -> Result<Resp, Unreachable<TypeConfig>> {
    if !reply.error.is_empty() {
        return Err(unreachable(format!(
            "node {target} refused: {}",
            reply.error
        )));
    }
    let result: Result<Resp, String> = codec::decode(&reply.payload).map_err(unreachable)?;
    result.map_err(|e| unreachable(format!("node {target}: {e}")))
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = Checkpoint;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call(Rpc::Append, &rpc, &option).await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call(Rpc::Vote, &rpc, &option).await?)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call(Rpc::TransferLeader, &req, &option).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let first = SnapshotChunk {
            cluster_id: (self.cluster)().unwrap_or_default(),
            group_id: self.group,
            from: self.from,
            vote: Bytes::from(codec::encode(&vote).map_err(unreachable)?),
            meta: Bytes::from(codec::encode(&snapshot.meta).map_err(unreachable)?),
            offset: 0,
            data: Bytes::new(),
            done: false,
        };
        let mut client = self.peers.client(&self.addr).map_err(unreachable)?;
        let chunks = snapshot_chunks(first, snapshot.snapshot);
        tracing::info!(group = self.group, target = self.target, "sending snapshot");
        let call = client.install_snapshot(tonic::Request::new(chunks));
        tokio::select! {
            reply = call => {
                let reply = reply
                    .map_err(|s| unreachable(format!("node {}: {}", self.target, s.message())))?
                    .into_inner();
                Ok(decode_reply(reply, self.target)?)
            }
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// The chunk stream of a checkpoint: the header chunk, then the file in order, the last
/// chunk marked `done`.
fn snapshot_chunks(
    first: SnapshotChunk,
    checkpoint: Checkpoint,
) -> impl Stream<Item = SnapshotChunk> + Send + 'static {
    let size = checkpoint.size();
    let state = (Some(first), checkpoint, 0u64, false);
    futures::stream::unfold(state, move |(first, ckpt, offset, finished)| async move {
        if let Some(first) = first {
            return Some((first, (None, ckpt, offset, false)));
        }
        if finished {
            return None;
        }
        let reader = ckpt.clone();
        let data = tokio::task::spawn_blocking(move || reader.read_chunk(offset, SNAPSHOT_CHUNK))
            .await
            .ok()?
            .ok()?;
        let next = offset + data.len() as u64;
        let done = next >= size;
        let chunk = SnapshotChunk {
            offset,
            data,
            done,
            ..SnapshotChunk::default()
        };
        Some((chunk, (None, ckpt, next, done)))
    })
}
