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
//! Nothing waits for company: a write goes out as soon as fewer than
//! [`ClientConfig::max_in_flight_per_shard`](crate::ClientConfig::max_in_flight_per_shard)
//! requests of its shard are in flight, and while that many are, the writes arriving meanwhile
//! gather for the next one to leave when an answer is back (one by default: the biggest
//! batches, the least work per write for the cluster). Per call
//! semantics stay those of a single put or delete:
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use islab_proto::v1 as proto;
use tokio::sync::oneshot;

use crate::client::Shared;
use crate::error::{Error, Result};
use crate::retry::Route;

/// Most writes in one coalesced batch.
const MAX_OPS: usize = 256;
/// Most key and value bytes in one coalesced batch.
const MAX_BYTES: usize = 1 << 20;

/// What a coalesced write gets back.
pub(crate) enum Outcome {
    Done(proto::OpResult),
    /// The batch was refused as a whole without being applied: send the write alone.
    Alone,
}

struct Waiting {
    op: proto::BatchOp,
    answer: oneshot::Sender<Result<Outcome>>,
}

#[derive(Default)]
struct Queue {
    /// Requests of this shard in flight (each a write sent alone, or a flusher task).
    in_flight: usize,
    waiting: Vec<Waiting>,
    keys: HashSet<Bytes>,
    bytes: usize,
}

/// Per-shard queues of writes waiting for the shard's request in flight.
#[derive(Default)]
pub(crate) struct Coalescer {
    queues: Mutex<HashMap<u64, Queue>>,
}

/// What to do with a write handed to the coalescer.
pub(crate) enum Turn {
    /// Send it now, alone. If it holds the shard's turn (`Some`), dropping the guard when the
    /// answer is in sends what gathered meanwhile.
    Now(Option<TurnGuard>),
    /// Queued: await the answer.
    Queued(oneshot::Receiver<Result<Outcome>>),
}

/// The shard's turn to send; dropped (answer in, or the caller gone), it passes the turn to
/// the writes that gathered meanwhile.
pub(crate) struct TurnGuard {
    shared: Arc<Shared>,
    group: u64,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        Coalescer::done(&self.shared, self.group);
    }
}

/// The key a wire batch op touches (`None` for an op that names no operation).
pub(crate) fn op_key(op: &proto::BatchOp) -> Option<&Bytes> {
    match op.op.as_ref()? {
        proto::batch_op::Op::Put(p) => Some(&p.key),
        proto::batch_op::Op::Delete(d) => Some(&d.key),
        proto::batch_op::Op::Cas(c) => Some(&c.key),
    }
}

fn size_of(op: &proto::BatchOp) -> usize {
    match op.op.as_ref() {
        Some(proto::batch_op::Op::Put(p)) => p.key.len() + p.value.len(),
        Some(proto::batch_op::Op::Delete(d)) => d.key.len(),
        Some(proto::batch_op::Op::Cas(c)) => c.key.len() + c.value.len(),
        None => 0,
    }
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Queue>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a write for `group`: either it may go now (the shard was idle, and is now marked
    /// busy), or it waits in the queue for the next batch. A write whose key is already
    /// queued, or that would overfill the batch, goes now too, on its own (concurrent writes
    /// of one key have no order to keep).
    pub(crate) fn offer(shared: &Arc<Shared>, group: u64, op: &proto::BatchOp) -> Turn {
        // A CAS is never coalesced: its failure would fail the whole batch.
        let is_cas = matches!(op.op, Some(proto::batch_op::Op::Cas(_)));
        let Some(key) = op_key(op).filter(|_| !is_cas) else {
            return Turn::Now(None);
        };
        let mut queues = shared.coalescer.lock();
        let q = queues.entry(group).or_default();
        if q.in_flight < shared.config.max_in_flight_per_shard {
            q.in_flight += 1;
            return Turn::Now(Some(TurnGuard {
                shared: shared.clone(),
                group,
            }));
        }
        let size = size_of(op);
        if q.keys.contains(key) || q.waiting.len() >= MAX_OPS || q.bytes + size > MAX_BYTES {
            return Turn::Now(None);
        }
        let (answer, rx) = oneshot::channel();
        q.keys.insert(key.clone());
        q.bytes += size;
        q.waiting.push(Waiting {
            op: op.clone(),
            answer,
        });
        Turn::Queued(rx)
    }

    /// Takes the writes gathered for `group`, or gives the caller's turn back (one request
    /// fewer in flight) when there are none.
    fn take(&self, group: u64) -> Vec<Waiting> {
        let mut queues = self.lock();
        let q = queues.entry(group).or_default();
        if q.waiting.is_empty() {
            q.in_flight = q.in_flight.saturating_sub(1);
            return Vec::new();
        }
        q.keys.clear();
        q.bytes = 0;
        std::mem::take(&mut q.waiting)
    }

    /// Gives a turn back without sending anything (one request fewer in flight).
    fn release(&self, group: u64) {
        let mut queues = self.lock();
        let q = queues.entry(group).or_default();
        q.in_flight = q.in_flight.saturating_sub(1);
    }

    /// Called when the write that held the turn has its answer: sends what gathered
    /// meanwhile, batch after batch, until nothing waits.
    fn done(shared: &Arc<Shared>, group: u64) {
        let waiting = shared.coalescer.take(group);
        if waiting.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the client is being torn down): nobody is there to answer the
            // gathered calls (dropping their senders fails them); give the turn back.
            shared.coalescer.release(group);
            return;
        };
        let shared = shared.clone();
        runtime.spawn(async move {
            let mut waiting = waiting;
            while !waiting.is_empty() {
                flush(&shared, group, waiting).await;
                waiting = shared.coalescer.take(group);
            }
        });
    }
}

/// Sends `waiting` as one batch (or, for one write, as a batch of one) and answers each.
async fn flush(shared: &Arc<Shared>, group: u64, waiting: Vec<Waiting>) {
    let ops: Vec<proto::BatchOp> = waiting.iter().map(|w| w.op.clone()).collect();
    let count = ops.len();
    let message = proto::BatchRequest {
        id: Some(shared.next_write_id()),
        ops,
    };
    let result = shared
        .kv(
            "Batch",
            Route::Leader,
            group,
            message,
            |mut c, r| async move { c.batch(r).await },
        )
        .await;
    match result {
        Ok(response) if response.results.len() == count => {
            for (w, r) in waiting.into_iter().zip(response.results) {
                let _ = w.answer.send(Ok(Outcome::Done(r)));
            }
        }
        Ok(response) => {
            let e = Error::Protocol(format!(
                "batch of {count} ops answered with {} results",
                response.results.len()
            ));
            for w in waiting {
                let _ = w.answer.send(Err(e.clone()));
            }
        }
        // Refused as a whole, before anything was applied: one write spoiled it for all.
        Err(Error::InvalidArgument(_) | Error::TooLarge(_) | Error::Rejected(_)) => {
            for w in waiting {
                let _ = w.answer.send(Ok(Outcome::Alone));
            }
        }
        Err(e) => {
            for w in waiting {
                let _ = w.answer.send(Err(e.clone()));
            }
        }
    }
}
