//! `islab.v1.Kv`: the data API.
//!
//! Writes become Raft proposals on the data group (a follower answers UNAVAILABLE with the
//! leader's address in `islab-leader`); linearizable reads wait for a read index, serializable
//! reads are served from this replica's memory at once. A value whose expiry has passed is
//! invisible.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use islab_proto::v1::kv_server::Kv;
use islab_proto::v1::{
    BatchOp, BatchRequest, BatchResponse, CompareAndSwapRequest, CompareAndSwapResponse,
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, KeyValue, OpResult, PutRequest,
    PutResponse, ReadConsistency, ScanRequest, ScanResponse, WriteId as ProtoWriteId, batch_op,
};
use islab_storage::{Command, Request, Response, Versioned, WriteId};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::error::{Error, Result};
use crate::node_state::{DATA_GROUP, NodeState};
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

fn unexpected(r: Response) -> Error {
    match r {
        Response::Rejected { reason } => Error::Rejected(reason),
        other => Error::Internal(format!("unexpected response {other:?}")),
    }
}

impl KvService {
    fn shard(&self) -> Result<Arc<Shard>> {
        if self.node.cluster.get().is_none() {
            // Retryable: right after init, a follower may not have heard from the leader yet.
            return Err(Error::Unavailable(
                "this node has not joined a cluster yet (is the cluster initialised? islab cluster init)"
                    .into(),
            ));
        }
        self.node.shard(DATA_GROUP)
    }

    async fn propose(&self, id: Option<WriteId>, command: Command) -> Result<(Response, u64)> {
        let shard = self.shard()?;
        let (response, log_id) = shard.write(Request { id, command }).await?;
        Ok((response, log_id.index))
    }

    async fn read_shard(&self, consistency: i32) -> Result<Arc<Shard>> {
        let shard = self.shard()?;
        match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::Linearizable) => shard.linearizable().await?,
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
        let r = req.into_inner();
        let limits = &self.node.config.limits;
        validate::key(limits, &r.key)?;
        validate::value(limits, &r.value)?;
        let command = Command::Put {
            key: r.key,
            value: r.value,
            expires_at: expiry(r.ttl_ms),
        };
        match self.propose(write_id(r.id), command).await? {
            (Response::Put { version }, _) => Ok(GrpcResponse::new(PutResponse { version })),
            (other, _) => Err(unexpected(other).into()),
        }
    }

    async fn get(&self, req: GrpcRequest<GetRequest>) -> Result<GrpcResponse<GetResponse>, Status> {
        let r = req.into_inner();
        validate::key(&self.node.config.limits, &r.key)?;
        let shard = self.read_shard(r.consistency).await?;
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

    async fn delete(
        &self,
        req: GrpcRequest<DeleteRequest>,
    ) -> Result<GrpcResponse<DeleteResponse>, Status> {
        let r = req.into_inner();
        validate::key(&self.node.config.limits, &r.key)?;
        match self
            .propose(write_id(r.id), Command::Delete { key: r.key })
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
        let r = req.into_inner();
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
        let shard = self.read_shard(r.consistency).await?;
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
        let r = req.into_inner();
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
        match self
            .propose(write_id(r.id), Command::Batch(commands))
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
        let r = req.into_inner();
        let limits = &self.node.config.limits;
        validate::key(limits, &r.key)?;
        validate::value(limits, &r.value)?;
        let command = Command::Cas {
            key: r.key,
            expected: r.expected_version,
            value: r.value,
            expires_at: expiry(r.ttl_ms),
        };
        match self.propose(write_id(r.id), command).await? {
            (Response::Cas { succeeded, current }, _) => {
                Ok(GrpcResponse::new(CompareAndSwapResponse {
                    succeeded,
                    current_version: current,
                }))
            }
            (other, _) => Err(unexpected(other).into()),
        }
    }
}
