//! `islab.v1.Kv`: the data API.
//!
//! Every key is routed to its shard by this node's copy of the shard map. Writes become Raft
//! proposals on the shard's group (a follower, or a node without a replica, answers
//! UNAVAILABLE with the address of the leader or of a replica in `islab-leader`);
//! linearizable reads wait for a read index, serializable reads are served from this
//! replica's memory at once. A request whose `islab-epoch` is older than this node's map is
//! answered with the map (see `Error::StaleEpoch`). A value whose expiry has passed is
//! invisible.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use islab_proto::v1::kv_server::Kv;
use islab_proto::v1::{
    BatchOp, BatchRequest, BatchResponse, CompareAndSwapRequest, CompareAndSwapResponse,
    DeleteRequest, DeleteResponse, GetManyRequest, GetManyResponse, GetRequest, GetResponse,
    GetShardMapRequest, GetShardMapResponse, KeyValue, OpResult, PutRequest, PutResponse,
    ReadConsistency, ScanRequest, ScanResponse, ShardMap as ProtoShardMap, WriteId as ProtoWriteId,
    batch_op,
};
use islab_shardmap::{ShardInfo, ShardMap};
use islab_storage::{Command, Request, Response, Versioned, WriteId};
use tonic::metadata::MetadataMap;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::error::{Error, Result};
use crate::node_state::NodeState;
use crate::quiesce;
use crate::shard::Shard;
use crate::validate;

pub(crate) struct KvService {
    pub node: Arc<NodeState>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn expiry(ttl_ms: u64) -> Option<u64> {
    (ttl_ms > 0).then(|| now_ms().saturating_add(ttl_ms))
}

fn write_id(id: Option<ProtoWriteId>) -> Option<WriteId> {
    id.filter(|id| id.client_id != 0).map(|id| WriteId {
        client: id.client_id,
        seq: id.seq,
    })
}

fn live(v: Versioned) -> Option<Versioned> {
    match v.expires_at {
        Some(at) if at <= now_ms() => None,
        _ => Some(v),
    }
}

/// The key a single-key command touches.
fn single_key(cmd: &Command) -> Option<&Bytes> {
    match cmd {
        Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => Some(key),
        Command::Batch(_) | Command::Gathered(_) => None,
    }
}

fn unexpected(r: Response) -> Error {
    match r {
        Response::Rejected { reason } => Error::Rejected(reason),
        other => Error::Internal(format!("unexpected response {other:?}")),
    }
}

/// The one shard every key is in, or INVALID_ARGUMENT naming two keys of different shards
/// (`why` says why they must share one).
fn one_shard<'m, 'k>(
    map: &'m ShardMap,
    keys: impl IntoIterator<Item = &'k Bytes>,
    why: &str,
) -> Result<&'m ShardInfo> {
    let mut first: Option<(&ShardInfo, &Bytes)> = None;
    for key in keys {
        let here = map.shard_of_key(key);
        match first {
            None => first = Some((here, key)),
            Some((info, first_key)) if info.id != here.id => {
                return Err(Error::InvalidArgument(format!(
                    "{why}, and its keys span shards {} ({:?}) and {} ({:?}): give keys that \
                     belong together a common hash tag, like {{user42}}:name and \
                     {{user42}}:cart",
                    info.id,
                    String::from_utf8_lossy(first_key),
                    here.id,
                    String::from_utf8_lossy(key)
                )));
            }
            Some(_) => {}
        }
    }
    first
        .map(|(info, _)| info)
        .ok_or_else(|| Error::InvalidArgument("the request names no key".into()))
}

impl KvService {
    /// The shard map, once this node is in an initialised cluster and has the map; checks
    /// the request's epoch against it.
    fn map(&self, metadata: &MetadataMap) -> Result<Arc<ShardMap>> {
        if self.node.cluster.get().is_none() {
            // Retryable: right after init, a follower may not have heard from the leader yet.
            return Err(Error::Unavailable(
                "this node has not joined a cluster yet (is the cluster initialised? islab cluster init)"
                    .into(),
            ));
        }
        let map = self.node.map().ok_or_else(|| {
            Error::Unavailable("the shard map has not reached this node yet".into())
        })?;
        if let Some(theirs) = metadata.get(islab_proto::EPOCH_METADATA) {
            let theirs: u64 = theirs
                .to_str()
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{} must be a decimal epoch",
                        islab_proto::EPOCH_METADATA
                    ))
                })?;
            if theirs < map.epoch {
                return Err(Error::StaleEpoch {
                    theirs,
                    map: Box::new(ProtoShardMap::from_map(&map, &self.node.nodes())),
                });
            }
        }
        Ok(map)
    }

    /// The local replica of `info`, or a redirect to a node that has one.
    fn replica(&self, info: &ShardInfo) -> Result<Arc<Shard>> {
        if let Ok(shard) = self.node.shard(info.id) {
            return Ok(shard);
        }
        let nodes = self.node.nodes();
        // The shard's leader, as its node's pings tell (so a client that follows the hint
        // lands on the leader in one redirect), else any replica (which hints the leader).
        let leader = self
            .node
            .liveness
            .leader_of(info.id, quiesce::LEADER_HINT_TTL)
            .filter(|l| info.replicas.contains(l));
        let elsewhere = leader
            .into_iter()
            .chain(info.replicas.iter().copied())
            .filter(|r| *r != self.node.id())
            .find_map(|r| nodes.get(&r).cloned());
        match elsewhere {
            Some(addr) => Err(Error::NotLeader { leader: Some(addr) }),
            None => Err(Error::Unavailable(format!(
                "shard {} has no replica this node knows of",
                info.id
            ))),
        }
    }

    /// The local replica of the shard holding `key`.
    fn route(&self, key: &[u8], metadata: &MetadataMap) -> Result<Arc<Shard>> {
        let map = self.map(metadata)?;
        self.replica(map.shard_of_key(key))
    }

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
            .map_err(|e| self.with_hint(shard.group, e))
    }

    /// A "not the leader" that names no leader (openraft knows none: an election or a
    /// leadership transfer under way) names the node whose pings say it leads the group, if
    /// one does, so that a client following hints is not left guessing.
    fn with_hint(&self, group: u64, e: Error) -> Error {
        match e {
            Error::NotLeader { leader: None } => {
                let nodes = self.node.nodes();
                let leader = self
                    .node
                    .liveness
                    .leader_of(group, quiesce::LEADER_HINT_TTL)
                    .filter(|l| *l != self.node.id())
                    .and_then(|l| nodes.get(&l).cloned());
                Error::NotLeader { leader }
            }
            other => other,
        }
    }

    async fn read(&self, shard: Arc<Shard>, consistency: i32) -> Result<Arc<Shard>> {
        match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::Linearizable) => shard
                .linearizable()
                .await
                .map_err(|e| self.with_hint(shard.group, e))?,
            Ok(ReadConsistency::Serializable) => {}
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unknown read consistency {consistency}"
                )));
            }
        }
        Ok(shard)
    }

    fn command(&self, op: BatchOp) -> Result<(Command, usize)> {
        let limits = &self.node.config.limits;
        let op = op
            .op
            .ok_or_else(|| Error::InvalidArgument("a batch op names no operation".into()))?;
        Ok(match op {
            batch_op::Op::Put(p) => {
                validate::key(limits, &p.key)?;
                validate::value(limits, &p.value)?;
                let n = p.key.len() + p.value.len();
                (
                    Command::Put {
                        key: p.key,
                        value: p.value,
                        expires_at: expiry(p.ttl_ms),
                    },
                    n,
                )
            }
            batch_op::Op::Delete(d) => {
                validate::key(limits, &d.key)?;
                let n = d.key.len();
                (Command::Delete { key: d.key }, n)
            }
            batch_op::Op::Cas(c) => {
                validate::key(limits, &c.key)?;
                validate::value(limits, &c.value)?;
                let n = c.key.len() + c.value.len();
                (
                    Command::Cas {
                        key: c.key,
                        expected: c.expected_version,
                        value: c.value,
                        expires_at: expiry(c.ttl_ms),
                    },
                    n,
                )
            }
        })
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let limits = &self.node.config.limits;
        validate::key(limits, &r.key)?;
        validate::value(limits, &r.value)?;
        let shard = self.route(&r.key, &metadata)?;
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
        let shard = self.route(&r.key, &metadata)?;
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
        let map = self.map(&metadata)?;
        let info = one_shard(&map, &r.keys, "a GetMany reads one shard")?;
        let shard = self.replica(info)?;
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
        let shard = self.route(&r.key, &metadata)?;
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
        let map = self.map(&metadata)?;
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
        let shard = self.replica(info)?;
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
            let (cmd, n) = self.command(op)?;
            bytes += n;
            commands.push(cmd);
        }
        validate::batch(limits, commands.len(), bytes)?;
        let map = self.map(&metadata)?;
        let mut keys = Vec::with_capacity(commands.len());
        for cmd in &commands {
            let Some(key) = single_key(cmd) else {
                return Err(Error::InvalidArgument("a batch cannot nest batches".into()).into());
            };
            keys.push(key);
        }
        let info = one_shard(&map, keys, "a batch is atomic within one shard")?;
        let shard = self.replica(info)?;
        match self
            .propose(&shard, write_id(r.id), Command::Batch(commands))
            .await?
        {
            (Response::Batch(results), version) => Ok(GrpcResponse::new(BatchResponse {
                results: results
                    .into_iter()
                    .map(|r| match r {
                        Response::Put { version } => OpResult {
                            version,
                            existed: false,
                        },
                        Response::Delete { existed } => OpResult {
                            version: 0,
                            existed,
                        },
                        Response::Cas { current, .. } => OpResult {
                            version: current.unwrap_or(0),
                            existed: false,
                        },
                        _ => OpResult::default(),
                    })
                    .collect(),
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
        let shard = self.route(&r.key, &metadata)?;
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
