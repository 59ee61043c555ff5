//! Wire messages to storage commands and back: expiry times from TTLs, write ids, batch ops
//! checked against the limits, and the per-op results of a batch.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use islab_proto::v1::{BatchOp, OpResult, WriteId as ProtoWriteId, batch_op};
use islab_storage::{Command, Response, Versioned, WriteId};

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::kv::validate;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When a value written now with `ttl_ms` expires (0: never).
pub(crate) fn expiry(ttl_ms: u64) -> Option<u64> {
    (ttl_ms > 0).then(|| now_ms().saturating_add(ttl_ms))
}

/// The write id of a request, if it has one (client id 0 means none).
pub(crate) fn write_id(id: Option<ProtoWriteId>) -> Option<WriteId> {
    id.filter(|id| id.client_id != 0).map(|id| WriteId {
        client: id.client_id,
        seq: id.seq,
    })
}

/// `v` unless its expiry has passed.
pub(crate) fn live(v: Versioned) -> Option<Versioned> {
    match v.expires_at {
        Some(at) if at <= now_ms() => None,
        _ => Some(v),
    }
}

/// The key a single-key command touches.
pub(crate) fn single_key(cmd: &Command) -> Option<&Bytes> {
    match cmd {
        Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => Some(key),
        Command::Batch(_) | Command::Gathered(_) => None,
    }
}

/// A response of the wrong kind for its request: a refusal, or a bug.
pub(crate) fn unexpected(r: Response) -> Error {
    match r {
        Response::Rejected { reason } => Error::Rejected(reason),
        other => Error::Internal(format!("unexpected response {other:?}")),
    }
}

/// One op of a batch as a command, checked against `limits`, with the bytes it carries.
pub(crate) fn batch_command(limits: &Limits, op: BatchOp) -> Result<(Command, usize)> {
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

/// What one op of an applied batch reports.
pub(crate) fn op_result(r: Response) -> OpResult {
    match r {
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
    }
}
