//! Write coalescing: concurrent puts and deletes from one [`Client`](crate::Client) to the same
//! shard travel together as one `Batch` RPC, so a busy client costs the cluster one request
//! and one log entry per round instead of one per write.
//!
//! ```text
//! put(k1) ──► shard queue idle?  yes ─► sent at once, alone, as a plain Put (no delay)
//! put(k2) ──►            busy ─► queued ┐
//! put(k3) ──►            busy ─► queued ┴─► when the first answer is back: one Batch [k2, k3]
//! ```
//!
//! The queueing and turns are the generic [`Coalescer`](crate::coalescer::Coalescer)'s; this
//! module says what a write batch is. Nothing waits for company: a write goes out as soon as
//! fewer than
//! [`ClientConfig::max_in_flight_per_shard`](crate::ClientConfig::max_in_flight_per_shard)
//! requests of its shard are in flight, and while that many are, the writes arriving meanwhile
//! gather for the next one to leave when an answer is back (one by default: the biggest
//! batches, the least work per write for the cluster). Per call semantics stay those of a
//! single put or delete:
//! - every write still gets its own answer (a put's version is the batch's version; a batch
//!   never holds the same key twice, so no two writes of one key share a version);
//! - a batch carries its own write id, so a resent batch is applied once;
//! - if the server refuses the batch as a whole for what one write did (too large, an invalid
//!   key), nothing was applied, and each write is sent again on its own, so only the bad one
//!   fails;
//! - any other failure (a timeout, say) is every write's failure, with the same "unknown
//!   outcome" meaning it has for a single write.
//!
//! Compare-and-swap is never coalesced: a failed CAS fails its whole batch.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use islab_proto::v1 as proto;

use crate::batch::{self, op_key};
use crate::coalescer::{Coalescer, Combine};
use crate::error::{Error, Result};
use crate::router::Router;

/// Most writes in one coalesced batch.
const MAX_OPS: usize = 256;
/// Most key and value bytes in one coalesced batch.
const MAX_BYTES: usize = 1 << 20;

/// Writes of one client gathered per shard into `Batch` RPCs.
pub(crate) type WriteCoalescer = Coalescer<WriteBatches>;

/// The write side of coalescing: per shard (group), wire batch ops into one `Batch`.
pub(crate) struct WriteBatches {
    router: Arc<Router>,
}

impl WriteBatches {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        WriteBatches { router }
    }
}

/// The keys and bytes of the writes waiting in one shard's queue.
#[derive(Default)]
pub(crate) struct Load {
    keys: HashSet<Bytes>,
    bytes: usize,
}

/// Whether `op` may share a batch at all: a put or delete naming a key (a CAS never: its
/// failure would fail the whole batch).
pub(crate) fn coalescable(op: &proto::BatchOp) -> bool {
    let is_cas = matches!(op.op, Some(proto::batch_op::Op::Cas(_)));
    !is_cas && op_key(op).is_some()
}

fn size_of(op: &proto::BatchOp) -> usize {
    match op.op.as_ref() {
        Some(proto::batch_op::Op::Put(p)) => p.key.len() + p.value.len(),
        Some(proto::batch_op::Op::Delete(d)) => d.key.len(),
        Some(proto::batch_op::Op::Cas(c)) => c.key.len() + c.value.len(),
        None => 0,
    }
}

impl Combine for WriteBatches {
    type At = u64;
    type Request = proto::BatchOp;
    type Answer = proto::OpResult;
    type Load = Load;
    const WHAT: &'static str = "write";

    /// A write whose key is already queued, or that would overfill the batch, goes now, on
    /// its own (concurrent writes of one key have no order to keep).
    fn admit(&self, load: &mut Load, waiting: usize, op: &proto::BatchOp) -> bool {
        let Some(key) = op_key(op) else {
            return false;
        };
        let size = size_of(op);
        if load.keys.contains(key) || waiting >= MAX_OPS || load.bytes + size > MAX_BYTES {
            return false;
        }
        load.keys.insert(key.clone());
        load.bytes += size;
        true
    }

    /// Sends `ops` as one batch (or, for one write, as a batch of one).
    async fn send(&self, group: u64, ops: Vec<proto::BatchOp>) -> Result<Vec<proto::OpResult>> {
        batch::send(&self.router, group, ops).await
    }

    /// Refused as a whole, before anything was applied: one write spoiled it for all.
    fn refused_as_whole(error: &Error) -> bool {
        matches!(
            error,
            Error::InvalidArgument(_) | Error::TooLarge(_) | Error::Rejected(_)
        )
    }
}
