//! `islab.v1.Kv`: the data API.
//!
//! Every key is routed to its shard by this node's copy of the shard map (`route`). Writes
//! become Raft proposals on the shard's group (a follower, or a node without a replica,
//! answers UNAVAILABLE with the address of the leader or of a replica in `islab-leader`);
//! linearizable reads wait for a read index, serializable reads are served from this
//! replica's memory at once. A request whose `islab-epoch` is older than this node's map is
//! answered with the map (see `Error::StaleEpoch`). A value whose expiry has passed is
//! invisible.

use std::sync::Arc;

use bytes::Bytes;
use islab_proto::v1::kv_server::Kv;
use islab_proto::v1::{
    BatchRequest, BatchResponse, CompareAndSwapRequest, CompareAndSwapResponse, DeleteRequest,
    DeleteResponse, GetManyRequest, GetManyResponse, GetRequest, GetResponse, GetShardMapRequest,
    GetShardMapResponse, KeyValue, PutRequest, PutResponse, ReadConsistency, ScanRequest,
    ScanResponse, ShardMap as ProtoShardMap,
};
use islab_storage::{Command, Request, Response, WriteId};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::error::{Error, Result};
use crate::kv::convert::{
    batch_command, expiry, live, op_result, single_key, unexpected, write_id,
};
use crate::kv::{route, validate};
use crate::node_state::NodeState;
use crate::shard::Shard;

pub(crate) struct KvService {
    pub node: Arc<NodeState>,
}

impl KvService {
    async fn propose(
        &self,
        shard: &Shard,
        id: Option<WriteId>,
        command: Command,
    ) -> Result<(Response, u64)> {
        // Only the leader's disk decides: a follower passes the write to `write`, which sends
        // the client on (to the leader, or to retry while there is none).
        if shard.is_leader(self.node.id()) {
            self.node.disk.check()?;
        }
        shard
            .write(Request { id, command })
            .await
            .map_err(|e| route::with_hint(&self.node, shard.group, e))
    }

    async fn read(&self, shard: Arc<Shard>, consistency: i32) -> Result<Arc<Shard>> {
        match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::Linearizable) => shard
                .linearizable()
                .await
                .map_err(|e| route::with_hint(&self.node, shard.group, e))?,
            Ok(ReadConsistency::Serializable) => {}
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unknown read consistency {consistency}"
                )));
            }
        }
        Ok(shard)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let limits = &self.node.config.limits;
        validate::key(limits, &r.key)?;
        validate::value(limits, &r.value)?;
        let shard = route::key(&self.node, &r.key, &metadata)?;
        let command = Command::Put {
            key: r.key,
            value: r.value,
            expires_at: expiry(r.ttl_ms),
        };
        match self.propose(&shard, write_id(r.id), command).await? {
            (Response::Put { version }, _) => Ok(GrpcResponse::new(PutResponse { version })),
            (other, _) => Err(unexpected(other).into()),
        }
    }

    async fn get(&self, req: GrpcRequest<GetRequest>) -> Result<GrpcResponse<GetResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        validate::key(&self.node.config.limits, &r.key)?;
        let shard = route::key(&self.node, &r.key, &metadata)?;
        let shard = self.read(shard, r.consistency).await?;
        shard.count_read(1);
        let found = shard.store.current().get(&r.key).and_then(live);
        Ok(GrpcResponse::new(match found {
            Some(v) => GetResponse {
                found: true,
                value: v.value,
                version: v.version,
            },
            None => GetResponse::default(),
        }))
    }

    async fn get_many(
        &self,
        req: GrpcRequest<GetManyRequest>,
    ) -> Result<GrpcResponse<GetManyResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let limits = &self.node.config.limits;
        if r.keys.is_empty() {
            return Err(Error::InvalidArgument("a GetMany names no key".into()).into());
        }
        if r.keys.len() > limits.max_batch_ops {
            return Err(Error::TooLarge(format!(
                "a GetMany of {} keys is above the limit of {}",
                r.keys.len(),
                limits.max_batch_ops
            ))
            .into());
        }
        for (i, key) in r.keys.iter().enumerate() {
            validate::key(limits, key)
                .map_err(|e| Error::InvalidArgument(format!("GetMany key #{i}: {e}")))?;
        }
        let map = route::map(&self.node, &metadata)?;
        let info = route::one_shard(&map, &r.keys, "a GetMany reads one shard")?;
        let shard = route::replica(&self.node, info)?;
        let shard = self.read(shard, r.consistency).await?;
        shard.count_read(r.keys.len());
        let store = shard.store.current();
        // The answer is bounded like a batch: a few keys naming large values (or one key named
        // many times) must not build a message of gigabytes before the transport refuses it.
        let mut bytes = 0usize;
        let mut items = Vec::with_capacity(r.keys.len());
        for key in &r.keys {
            let item = match store.get(key).and_then(live) {
                Some(v) => GetResponse {
                    found: true,
                    value: v.value,
                    version: v.version,
                },
                None => GetResponse::default(),
            };
            bytes += key.len() + item.value.len();
            if bytes > limits.max_batch_bytes {
                return Err(Error::TooLarge(format!(
                    "the answer to a GetMany of {} keys would hold more than {} bytes, the \
                     limit: ask for fewer keys at a time",
                    r.keys.len(),
                    limits.max_batch_bytes
                ))
                .into());
            }
            items.push(item);
        }
        Ok(GrpcResponse::new(GetManyResponse { items }))
    }

    async fn delete(
        &self,
        req: GrpcRequest<DeleteRequest>,
    ) -> Result<GrpcResponse<DeleteResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        validate::key(&self.node.config.limits, &r.key)?;
        let shard = route::key(&self.node, &r.key, &metadata)?;
        match self
            .propose(&shard, write_id(r.id), Command::Delete { key: r.key })
            .await?
        {
            (Response::Delete { existed }, _) => Ok(GrpcResponse::new(DeleteResponse { existed })),
            (other, _) => Err(unexpected(other).into()),
        }
    }

    async fn scan(
        &self,
        req: GrpcRequest<ScanRequest>,
    ) -> Result<GrpcResponse<ScanResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let limits = &self.node.config.limits;
        let limit = match r.limit as usize {
            0 => limits.default_scan_limit,
            n if n > limits.max_scan_limit => {
                return Err(Error::TooLarge(format!(
                    "a scan page of {n} keys is above the limit of {}",
                    limits.max_scan_limit
                ))
                .into());
            }
            n => n,
        };
        let map = route::map(&self.node, &metadata)?;
        let info = match (r.shard, map.shards.len()) {
            (0, 1) => &map.shards[0],
            (0, n) => {
                return Err(Error::InvalidArgument(format!(
                    "a scan must name its shard: this cluster has {n} (the SDK scans them all)"
                ))
                .into());
            }
            (id, _) => map
                .shard(id)
                .ok_or_else(|| Error::InvalidArgument(format!("there is no shard {id}")))?,
        };
        let shard = route::replica(&self.node, info)?;
        let shard = self.read(shard, r.consistency).await?;
        shard.count_read(1);
        let store = shard.store.current();
        // A page visits every key of the shard: off the async workers.
        let (items, more) = tokio::task::spawn_blocking(move || {
            let end = (!r.end.is_empty()).then_some(&r.end[..]);
            store.scan(&r.start, end, &r.prefix, limit)
        })
        .await
        .map_err(|e| Error::Internal(format!("scan task: {e}")))?;
        let next_start = match (more, items.last()) {
            (true, Some((k, _))) => {
                let mut next = k.to_vec();
                next.push(0);
                Bytes::from(next)
            }
            _ => Bytes::new(),
        };
        let items = items
            .into_iter()
            .filter_map(|(key, v)| {
                live(v).map(|v| KeyValue {
                    key,
                    value: v.value,
                    version: v.version,
                })
            })
            .collect();
        Ok(GrpcResponse::new(ScanResponse {
            items,
            more,
            next_start,
        }))
    }

    async fn batch(
        &self,
        req: GrpcRequest<BatchRequest>,
    ) -> Result<GrpcResponse<BatchResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let limits = &self.node.config.limits;
        validate::batch(limits, r.ops.len(), 0)?;
        let mut commands = Vec::with_capacity(r.ops.len());
        let mut bytes = 0;
        for op in r.ops {
            let (cmd, n) = batch_command(limits, op)?;
            bytes += n;
            commands.push(cmd);
        }
        validate::batch(limits, commands.len(), bytes)?;
        let map = route::map(&self.node, &metadata)?;
        let mut keys = Vec::with_capacity(commands.len());
        for cmd in &commands {
            let Some(key) = single_key(cmd) else {
                return Err(Error::InvalidArgument("a batch cannot nest batches".into()).into());
            };
            keys.push(key);
        }
        let info = route::one_shard(&map, keys, "a batch is atomic within one shard")?;
        let shard = route::replica(&self.node, info)?;
        match self
            .propose(&shard, write_id(r.id), Command::Batch(commands))
            .await?
        {
            (Response::Batch(results), version) => Ok(GrpcResponse::new(BatchResponse {
                results: results.into_iter().map(op_result).collect(),
                version,
            })),
            (other, _) => Err(unexpected(other).into()),
        }
    }

    async fn compare_and_swap(
        &self,
        req: GrpcRequest<CompareAndSwapRequest>,
    ) -> Result<GrpcResponse<CompareAndSwapResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let limits = &self.node.config.limits;
        validate::key(limits, &r.key)?;
        validate::value(limits, &r.value)?;
        let shard = route::key(&self.node, &r.key, &metadata)?;
        let command = Command::Cas {
            key: r.key,
            expected: r.expected_version,
            value: r.value,
            expires_at: expiry(r.ttl_ms),
        };
        match self.propose(&shard, write_id(r.id), command).await? {
            (Response::Cas { succeeded, current }, _) => {
                Ok(GrpcResponse::new(CompareAndSwapResponse {
                    succeeded,
                    current_version: current,
                }))
            }
            (other, _) => Err(unexpected(other).into()),
        }
    }

    async fn get_shard_map(
        &self,
        _req: GrpcRequest<GetShardMapRequest>,
    ) -> Result<GrpcResponse<GetShardMapResponse>, Status> {
        let map = self
            .node
            .map()
            .map(|m| ProtoShardMap::from_map(&m, &self.node.nodes()));
        Ok(GrpcResponse::new(GetShardMapResponse { map }))
    }
}
