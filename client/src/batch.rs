//! Operations of an atomic batch.
//!
//! A batch is applied all or nothing at one version. If one of its compare-and-swaps does
//! not match, nothing is applied and the call fails with [`Error::Rejected`](crate::Error)
//! naming the op; on success there is one [`OpResult`] per op, in order.

use std::time::Duration;

use bytes::Bytes;
use islab_proto::v1 as proto;
use islab_proto::v1::batch_op::Op;

use crate::error::{Error, Result};
use crate::kv::{check_key, ttl_ms};
use crate::retry::Route;
use crate::router::Router;

/// One operation of a [`Client::batch`](crate::Client::batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Store `value` under `key`.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// Expire the key this long after the batch applies; `None`: never.
        ttl: Option<Duration>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Store `value` only if the key's version is `expected` (`None`: only if it is absent).
    Cas {
        /// The key.
        key: Bytes,
        /// The version the key must have; `None`: the key must not exist.
        expected: Option<u64>,
        /// The value.
        value: Bytes,
        /// Expire the key this long after the batch applies; `None`: never.
        ttl: Option<Duration>,
    },
}

impl BatchOp {
    /// The key the op touches.
    pub fn key(&self) -> &Bytes {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } | BatchOp::Cas { key, .. } => key,
        }
    }

    /// A put.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        BatchOp::Put {
            key: key.into(),
            value: value.into(),
            ttl: None,
        }
    }

    /// A put of a key that expires after `ttl`.
    pub fn put_with_ttl(key: impl Into<Bytes>, value: impl Into<Bytes>, ttl: Duration) -> Self {
        BatchOp::Put {
            key: key.into(),
            value: value.into(),
            ttl: Some(ttl),
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<Bytes>) -> Self {
        BatchOp::Delete { key: key.into() }
    }

    /// A compare-and-swap: fails the whole batch unless the key's version is `expected`
    /// (`None`: unless the key is absent).
    pub fn cas(key: impl Into<Bytes>, expected: Option<u64>, value: impl Into<Bytes>) -> Self {
        BatchOp::Cas {
            key: key.into(),
            expected,
            value: value.into(),
            ttl: None,
        }
    }

    /// A compare-and-swap whose new value expires after `ttl`.
    pub fn cas_with_ttl(
        key: impl Into<Bytes>,
        expected: Option<u64>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Self {
        BatchOp::Cas {
            key: key.into(),
            expected,
            value: value.into(),
            ttl: Some(ttl),
        }
    }

    /// The wire form; refuses an empty key or a zero TTL.
    pub(crate) fn to_proto(&self) -> Result<proto::BatchOp> {
        let ttl = |t: &Option<Duration>| t.map_or(Ok(0), ttl_ms);
        let op = match self {
            BatchOp::Put { key, value, ttl: t } => {
                check_key(key)?;
                Op::Put(proto::PutOp {
                    key: key.clone(),
                    value: value.clone(),
                    ttl_ms: ttl(t)?,
                })
            }
            BatchOp::Delete { key } => {
                check_key(key)?;
                Op::Delete(proto::DeleteOp { key: key.clone() })
            }
            BatchOp::Cas {
                key,
                expected,
                value,
                ttl: t,
            } => {
                check_key(key)?;
                Op::Cas(proto::CasOp {
                    key: key.clone(),
                    expected_version: *expected,
                    value: value.clone(),
                    ttl_ms: ttl(t)?,
                })
            }
        };
        Ok(proto::BatchOp { op: Some(op) })
    }
}

/// The result of one op of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpResult {
    /// Put and CAS: the new version (the batch's version). Delete: 0.
    pub version: u64,
    /// Delete: whether the key existed. Put and CAS: false.
    pub existed: bool,
}

impl From<proto::OpResult> for OpResult {
    fn from(r: proto::OpResult) -> Self {
        OpResult {
            version: r.version,
            existed: r.existed,
        }
    }
}

/// The key a wire batch op touches (`None` for an op that names no operation).
pub(crate) fn op_key(op: &proto::BatchOp) -> Option<&Bytes> {
    match op.op.as_ref()? {
        Op::Put(p) => Some(&p.key),
        Op::Delete(d) => Some(&d.key),
        Op::Cas(c) => Some(&c.key),
    }
}

/// Applies wire `ops` atomically in their one shard (see [`Client::batch`](crate::Client::batch)):
/// refuses ops of different shards before any I/O, takes the batch's write id once.
pub(crate) async fn apply(router: &Router, ops: Vec<proto::BatchOp>) -> Result<Vec<OpResult>> {
    let group = match ops.iter().filter_map(op_key).next() {
        Some(key) => router.group_of(key).await?,
        None => 0,
    };
    if let Some(map) = router.endpoints.map() {
        let shard = |key: &[u8]| map.shard_of_key(key).id;
        if let Some(other) = ops.iter().filter_map(op_key).find(|k| shard(k) != group) {
            return Err(Error::InvalidArgument(format!(
                "a batch is atomic within one shard only, and key {:?} is in shard {} while \
                 the first key is in shard {group}: give keys that change together a common \
                 hash tag ({{user42}}:a, {{user42}}:b), or use batch_per_shard",
                String::from_utf8_lossy(other),
                shard(other)
            )));
        }
    }
    Ok(send(router, group, ops)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Sends `ops` to `group`'s leader as one atomic Batch under a fresh write id, and checks that
/// the answer has one result per op.
pub(crate) async fn send(
    router: &Router,
    group: u64,
    ops: Vec<proto::BatchOp>,
) -> Result<Vec<proto::OpResult>> {
    let count = ops.len();
    let message = proto::BatchRequest {
        id: Some(router.next_write_id()),
        ops,
    };
    let response = router
        .kv(
            "Batch",
            Route::Leader,
            group,
            message,
            |mut c, r| async move { c.batch(r).await },
        )
        .await?;
    if response.results.len() != count {
        return Err(Error::Protocol(format!(
            "batch of {count} ops answered with {} results",
            response.results.len()
        )));
    }
    Ok(response.results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn ops_map_to_the_wire() {
        let put = BatchOp::put_with_ttl("k", "v", Duration::from_secs(2));
        assert_eq!(
            put.to_proto().unwrap().op,
            Some(Op::Put(proto::PutOp {
                key: "k".into(),
                value: "v".into(),
                ttl_ms: 2000,
            }))
        );
        let cas = BatchOp::cas("k", None, "v").to_proto().unwrap();
        assert!(matches!(
            cas.op,
            Some(Op::Cas(proto::CasOp {
                expected_version: None,
                ttl_ms: 0,
                ..
            }))
        ));
        let del = BatchOp::delete("k").to_proto().unwrap();
        assert!(matches!(del.op, Some(Op::Delete(_))));
    }

    #[test]
    fn bad_ops_are_refused_before_sending() {
        let zero_ttl = BatchOp::put_with_ttl("k", "v", Duration::ZERO);
        assert!(matches!(
            zero_ttl.to_proto(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            BatchOp::delete("").to_proto(),
            Err(Error::InvalidArgument(_))
        ));
    }
}
