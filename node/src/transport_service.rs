//! The Raft network, server side: peers' RPCs handed to the right group's `Raft`.
//!
//! A request from another cluster, for an unknown group, or that does not decode is refused
//! in the reply's `error` field (the sender backs off); it never reaches openraft.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use islab_proto::raft::v1::transport_server::Transport;
use islab_proto::raft::v1::{PingReply, PingRequest, RaftReply, RaftRequest, SnapshotChunk};
use islab_raft::{Snapshot, SnapshotMeta, TypeConfig, Vote};
use islab_storage::{CheckpointReceiver, codec};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::node_state::NodeState;
use crate::shard::Shard;

pub(crate) struct TransportService {
    pub node: Arc<NodeState>,
}

fn reply<T: Serialize>(result: Result<T, String>) -> Result<Response<RaftReply>, Status> {
    let payload = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftReply {
        payload: Bytes::from(payload),
        error: String::new(),
    }))
}

fn refuse(e: Error) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply {
        payload: Bytes::new(),
        error: e.to_string(),
    }))
}

impl TransportService {
    /// The group a peer's message is for, once its cluster id checks out.
    fn accept(&self, cluster_id: &str, group: u64) -> Result<Arc<Shard>> {
        self.node.cluster.accept(cluster_id)?;
        self.node.shard(group)
    }

    /// The group a peer's message is for and its decoded payload, or why it is refused.
    fn open<T: DeserializeOwned>(
        &self,
        request: Request<RaftRequest>,
        what: &str,
    ) -> Result<(Arc<Shard>, T)> {
        let r = request.into_inner();
        let shard = self.accept(&r.cluster_id, r.group_id)?;
        let payload = codec::decode(&r.payload)
            .map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?;
        Ok((shard, payload))
    }
}

#[tonic::async_trait]
impl Transport for TransportService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (shard, rpc) =
            match self.open::<AppendEntriesRequest<TypeConfig>>(request, "append entries") {
                Ok(x) => x,
                Err(e) => return refuse(e),
            };
        reply(
            shard
                .raft
                .append_entries(rpc)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (shard, rpc) = match self.open::<VoteRequest<TypeConfig>>(request, "vote") {
            Ok(x) => x,
            Err(e) => return refuse(e),
        };
        reply(shard.raft.vote(rpc).await.map_err(|e| e.to_string()))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let r = request.into_inner();
        self.node.cluster.accept(&r.cluster_id)?;
        self.node.liveness.heard(
            r.from,
            r.quiesced.into_iter().collect(),
            r.leading.into_iter().collect(),
        );
        Ok(Response::new(PingReply {}))
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (shard, req) =
            match self.open::<TransferLeaderRequest<TypeConfig>>(request, "transfer leader") {
                Ok(x) => x,
                Err(e) => return refuse(e),
            };
        reply(
            shard
                .raft
                .handle_transfer_leader(req)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut chunks = request.into_inner();
        let first = match chunks.next().await {
            Some(Ok(c)) => c,
            Some(Err(s)) => return Err(s),
            None => return refuse(Error::InvalidArgument("empty snapshot stream".into())),
        };
        let shard = match self.accept(&first.cluster_id, first.group_id) {
            Ok(s) => s,
            Err(e) => return refuse(e),
        };
        let decoded: Result<(Vote, SnapshotMeta), _> =
            codec::decode(&first.vote).and_then(|v| Ok((v, codec::decode(&first.meta)?)));
        let (vote, meta) = match decoded {
            Ok(x) => x,
            Err(e) => return refuse(Error::InvalidArgument(format!("snapshot header: {e}"))),
        };
        let path = self.node.incoming_path(shard.group);
        let checkpoint = match receive(&path, chunks).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(islab_storage::temp_path(&path));
                return refuse(e);
            }
        };
        tracing::info!(group = shard.group, snapshot = %meta, bytes = checkpoint.size(), "received snapshot");
        islab_storage::failpoint!("snapshot::install", |_| {
            let _ = std::fs::remove_file(&path);
            refuse(Error::Internal(
                islab_storage::failpoints::injected_error("snapshot::install").to_string(),
            ))
        });
        let result = shard
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: checkpoint,
                },
            )
            .await
            .map_err(|e| e.to_string());
        // The state machine linked the file into its own directory (or did not want it).
        let _ = std::fs::remove_file(&path);
        reply(result)
    }
}

/// Writes the chunks to `path`, verifying the whole file before it counts as received.
async fn receive(
    path: &Path,
    mut chunks: Streaming<SnapshotChunk>,
) -> Result<islab_storage::Checkpoint> {
    let mut rx = CheckpointReceiver::create(path)?;
    let mut done = false;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|s| Error::Unavailable(format!("snapshot stream: {s}")))?;
        rx.write_chunk(chunk.offset, &chunk.data)?;
        if chunk.done {
            done = true;
            break;
        }
    }
    if !done {
        return Err(Error::Unavailable("snapshot stream ended early".into()));
    }
    Ok(tokio::task::spawn_blocking(move || rx.finish())
        .await
        .map_err(|e| Error::Internal(e.to_string()))??)
}
