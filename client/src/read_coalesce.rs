//! Read coalescing: concurrent gets from one [`Client`](crate::Client) to the same shard, with
//! the same consistency, travel together as one `GetMany` RPC, so a busy client costs the
//! cluster one request (and, for linearizable reads, one read-index round) per batch instead
//! of one per key.
//!
//! ```text
//! get(k1) ──► shard idle?  yes ─► sent at once, alone, as a plain Get (no delay)
//! get(k2) ──►        busy ─► queued ┐
//! get(k3) ──►        busy ─► queued ┴─► when the first answer is back: one GetMany [k2, k3]
//! ```
//!
//! Like write coalescing (`coalesce.rs`), nothing waits for company (a get goes at once while
//! fewer than `max_in_flight_per_shard` gets of its shard and consistency are in flight), and
//! each get keeps its own meaning. A queued get's `GetMany` leaves after the get was called, so a linearizable
//! one still sees every write acknowledged before the call. A `GetMany` refused as a whole
//! (an invalid key, or a server that does not know the RPC) sends each get again alone, so
//! only a bad key fails; any other failure is every waiting get's failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use islab_proto::v1 as proto;
use tokio::sync::oneshot;

use crate::client::Shared;
use crate::error::{Error, Result};
use crate::kv::ReadConsistency;

/// Most keys in one coalesced `GetMany` (the server's default limit is 10,000).
const MAX_KEYS: usize = 1024;

/// What a coalesced get gets back.
pub(crate) enum ReadOutcome {
    Done(proto::GetResponse),
    /// The `GetMany` was refused as a whole: send the get alone.
    Alone,
}

struct Waiting {
    key: Bytes,
    answer: oneshot::Sender<Result<ReadOutcome>>,
}

#[derive(Default)]
struct Queue {
    /// Gets of this shard and consistency in flight (each a get sent alone, or a flusher task).
    in_flight: usize,
    waiting: Vec<Waiting>,
}

/// Queues keyed by shard and consistency.
type Queues = HashMap<(u64, ReadConsistency), Queue>;

/// Per-shard, per-consistency queues of gets waiting for the request in flight.
#[derive(Default)]
pub(crate) struct ReadCoalescer {
    queues: Mutex<Queues>,
}

/// What to do with a get handed to the coalescer.
pub(crate) enum ReadTurn {
    /// Send it now, alone. If it holds the turn (`Some`), dropping the guard when the answer
    /// is in sends what gathered meanwhile.
    Now(Option<ReadGuard>),
    /// Queued: await the answer.
    Queued(oneshot::Receiver<Result<ReadOutcome>>),
}

/// The turn of one shard's reads of one consistency; dropped, it passes the turn to the gets
/// that gathered meanwhile.
pub(crate) struct ReadGuard {
    shared: Arc<Shared>,
    at: (u64, ReadConsistency),
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        ReadCoalescer::done(&self.shared, self.at);
    }
}

impl ReadCoalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a get of `key`: it goes now (fewer than the most allowed of its shard and
    /// consistency were in flight; it now counts as one), or waits for the next `GetMany`.
    pub(crate) fn offer(
        shared: &Arc<Shared>,
        group: u64,
        consistency: ReadConsistency,
        key: &Bytes,
    ) -> ReadTurn {
        let at = (group, consistency);
        let mut queues = shared.read_coalescer.lock();
        let q = queues.entry(at).or_default();
        if q.in_flight < shared.config.max_in_flight_per_shard {
            q.in_flight += 1;
            return ReadTurn::Now(Some(ReadGuard {
                shared: shared.clone(),
                at,
            }));
        }
        if q.waiting.len() >= MAX_KEYS {
            return ReadTurn::Now(None);
        }
        let (answer, rx) = oneshot::channel();
        q.waiting.push(Waiting {
            key: key.clone(),
            answer,
        });
        ReadTurn::Queued(rx)
    }

    /// Takes the gets gathered at `at`, or gives the caller's turn back (one request fewer in
    /// flight) when there are none.
    fn take(&self, at: (u64, ReadConsistency)) -> Vec<Waiting> {
        let mut queues = self.lock();
        let q = queues.entry(at).or_default();
        if q.waiting.is_empty() {
            q.in_flight = q.in_flight.saturating_sub(1);
        }
        std::mem::take(&mut q.waiting)
    }

    /// Gives a turn back without sending anything (one request fewer in flight).
    fn release(&self, at: (u64, ReadConsistency)) {
        let mut queues = self.lock();
        let q = queues.entry(at).or_default();
        q.in_flight = q.in_flight.saturating_sub(1);
    }

    /// Called when the get that held the turn has its answer: sends what gathered meanwhile,
    /// one `GetMany` after another, until nothing waits.
    fn done(shared: &Arc<Shared>, at: (u64, ReadConsistency)) {
        let waiting = shared.read_coalescer.take(at);
        if waiting.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the client is being torn down): nobody is there to answer the
            // gathered calls (dropping their senders fails them); give the turn back.
            shared.read_coalescer.release(at);
            return;
        };
        let shared = shared.clone();
        runtime.spawn(async move {
            let mut waiting = waiting;
            while !waiting.is_empty() {
                flush(&shared, at, waiting).await;
                waiting = shared.read_coalescer.take(at);
            }
        });
    }
}

/// Sends `waiting` as one `GetMany` and answers each get.
async fn flush(
    shared: &Arc<Shared>,
    (group, consistency): (u64, ReadConsistency),
    waiting: Vec<Waiting>,
) {
    let keys: Vec<Bytes> = waiting.iter().map(|w| w.key.clone()).collect();
    let count = keys.len();
    match shared.get_many(group, consistency, keys).await {
        Ok(items) if items.len() == count => {
            for (w, item) in waiting.into_iter().zip(items) {
                let _ = w.answer.send(Ok(ReadOutcome::Done(item)));
            }
        }
        Ok(items) => {
            let e = Error::Protocol(format!(
                "a GetMany of {count} keys answered with {} items",
                items.len()
            ));
            for w in waiting {
                let _ = w.answer.send(Err(e.clone()));
            }
        }
        // Refused as a whole: one key spoiled it for all, or the server predates GetMany.
        Err(Error::InvalidArgument(_) | Error::TooLarge(_))
        | Err(Error::Server {
            code: tonic::Code::Unimplemented,
            ..
        }) => {
            for w in waiting {
                let _ = w.answer.send(Ok(ReadOutcome::Alone));
            }
        }
        Err(e) => {
            for w in waiting {
                let _ = w.answer.send(Err(e.clone()));
            }
        }
    }
}
