//! The Raft network, server side: peers' RPCs handed to the right group's `Raft`.
//!
//! A request from another cluster, for an unknown group, or that does not decode is refused
//! in the reply's `error` field (the sender backs off); it never reaches openraft. Which groups
//! run here, which cluster this is, where snapshots are received and what a ping means are the
//! node's business: it answers them as the [`GroupHost`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use islab_proto::raft::v1::transport_server::Transport;
use islab_proto::raft::v1::{PingReply, PingRequest, RaftReply, RaftRequest, SnapshotChunk};
use islab_storage::{CheckpointReceiver, GroupId, codec};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::group::Group;
use crate::type_config::{Snapshot, SnapshotMeta, TypeConfig, Vote};

/// What the transport asks of the node that hosts the groups. Refusals are sent back to the
/// peer as text.
pub trait GroupHost: Send + Sync + 'static {
    /// Accepts a message from cluster `cluster_id` (adopting it if this node has none yet,
    /// which writes to disk: hence async).
    fn accept(&self, cluster_id: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// The running group `id`.
    fn group(&self, id: GroupId) -> Result<Group, String>;
    /// A fresh path to receive a snapshot of `group` in, before it is installed.
    fn incoming_path(&self, group: GroupId) -> PathBuf;
    /// A peer's ping (its liveness and its quiet groups), already accepted.
    fn ping(&self, ping: PingRequest);
}

/// The `islab.raft.v1.Transport` service of a node.
pub struct TransportService<H> {
    host: Arc<H>,
}

impl<H: GroupHost> TransportService<H> {
    pub fn new(host: Arc<H>) -> TransportService<H> {
        TransportService { host }
    }
}

type Result<T, E = String> = std::result::Result<T, E>;

fn reply<T: Serialize>(result: Result<T, String>) -> Result<Response<RaftReply>, Status> {
    let payload = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftReply {
        payload: Bytes::from(payload),
        error: String::new(),
    }))
}

fn refuse(e: String) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply {
        payload: Bytes::new(),
        error: e,
    }))
}

impl<H: GroupHost> TransportService<H> {
    /// The group a peer's message is for, once its cluster id checks out.
    async fn accept(&self, cluster_id: &str, group: u64) -> Result<Group> {
        self.host.accept(cluster_id).await?;
        self.host.group(group)
    }

    /// The group a peer's message is for and its decoded payload, or why it is refused.
    async fn open<T: DeserializeOwned>(
        &self,
        request: Request<RaftRequest>,
        what: &str,
    ) -> Result<(Group, T)> {
        let r = request.into_inner();
        let group = self.accept(&r.cluster_id, r.group_id).await?;
        let payload = codec::decode(&r.payload).map_err(|e| format!("{what}: {e}"))?;
        Ok((group, payload))
    }
}

#[tonic::async_trait]
impl<H: GroupHost> Transport for TransportService<H> {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (group, rpc) = match self
            .open::<AppendEntriesRequest<TypeConfig>>(request, "append entries")
            .await
        {
            Ok(x) => x,
            Err(e) => return refuse(e),
        };
        reply(
            group
                .raft()
                .append_entries(rpc)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (group, rpc) = match self.open::<VoteRequest<TypeConfig>>(request, "vote").await {
            Ok(x) => x,
            Err(e) => return refuse(e),
        };
        reply(group.raft().vote(rpc).await.map_err(|e| e.to_string()))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let r = request.into_inner();
        self.host
            .accept(&r.cluster_id)
            .await
            .map_err(Status::failed_precondition)?;
        self.host.ping(r);
        Ok(Response::new(PingReply {}))
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (group, req) = match self
            .open::<TransferLeaderRequest<TypeConfig>>(request, "transfer leader")
            .await
        {
            Ok(x) => x,
            Err(e) => return refuse(e),
        };
        reply(
            group
                .raft()
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
            None => return refuse("empty snapshot stream".into()),
        };
        let group = match self.accept(&first.cluster_id, first.group_id).await {
            Ok(g) => g,
            Err(e) => return refuse(e),
        };
        let decoded: Result<(Vote, SnapshotMeta), _> =
            codec::decode(&first.vote).and_then(|v| Ok((v, codec::decode(&first.meta)?)));
        let (vote, meta) = match decoded {
            Ok(x) => x,
            Err(e) => return refuse(format!("snapshot header: {e}")),
        };
        let path = self.host.incoming_path(group.id());
        let checkpoint = match receive(&path, chunks).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(islab_storage::temp_path(&path));
                return refuse(e);
            }
        };
        tracing::info!(group = group.id(), snapshot = %meta, bytes = checkpoint.size(), "received snapshot");
        islab_storage::failpoint!("snapshot::install", |_| {
            let _ = std::fs::remove_file(&path);
            refuse(format!(
                "internal error: {}",
                islab_storage::failpoints::injected_error("snapshot::install")
            ))
        });
        let result = group
            .raft()
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
    let mut rx = CheckpointReceiver::create(path).map_err(|e| e.to_string())?;
    let mut done = false;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|s| format!("snapshot stream: {s}"))?;
        rx.write_chunk(chunk.offset, &chunk.data)
            .map_err(|e| e.to_string())?;
        if chunk.done {
            done = true;
            break;
        }
    }
    if !done {
        return Err("snapshot stream ended early".into());
    }
    tokio::task::spawn_blocking(move || rx.finish())
        .await
        .map_err(|e| format!("internal error: {e}"))?
        .map_err(|e| e.to_string())
}
