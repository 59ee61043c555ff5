//! Write gathering: the writes of one group that arrive, from any client, while its previous
//! proposal is in flight share the next Raft entry.
//!
//! ```text
//! write ──► join the queue ──► (fewer than max-in-flight proposals running?) start a driver
//! driver: loop { take the queue's head (≤ max-requests, ≤ max-bytes);
//!                one client_write(Gathered[r0, r1, …]); answer each rᵢ with its own result }
//! ```
//!
//! A lone write goes at once, alone: gathering never adds a wait. Under load, what queues up
//! during one proposal's round trip (WAL fsync, replication, apply) leaves as one entry, so the
//! cost of an entry — a log record, an AppendEntries message, an fsync share, a task wake-up
//! per stage on every replica — is paid once per gathered entry instead of once per request,
//! whichever connection each request came on.
//!
//! Every request keeps its meaning: it is applied on its own, in queue order, with its own
//! write id (a retry is answered once, from the session records), its own compare-and-swap
//! outcome and its own version (`islab_storage::version`: the entry's log index × 4096 plus
//! its position); a batch stays one atomic request. A failed proposal (not the leader, shut
//! down) fails every request it carried, each with the same error and the usual unknown-outcome
//! meaning for the client.
//!
//! Drivers are tasks of their own, so a caller that gives up (its RPC cancelled) drops only
//! its answer: the queue is never left without a driver while it holds requests.

use std::sync::{Arc, Mutex};

use islab_raft::Group;
use islab_storage::{Command, MAX_GATHERED, Request, Response, version};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};

/// How writes are gathered into entries (`NodeConfig::gather`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GatherLimits {
    /// Most requests in one entry (at most `MAX_GATHERED`).
    pub max_requests: usize,
    /// Most key and value bytes in one entry; a larger request goes alone.
    pub max_bytes: usize,
    /// Proposals of the group in flight at once.
    pub max_in_flight: usize,
}

/// Requests a shard's queue holds at most; more are refused (UNAVAILABLE: the shard is
/// overloaded or cannot commit, e.g. its leader is cut off from a quorum) instead of piling up.
pub(crate) const MAX_QUEUED: usize = 65_536;

/// Why a proposal failed, in a form every request it carried can get a copy of.
#[derive(Clone, Debug)]
enum Failure {
    NotLeader(Option<String>),
    Unavailable(String),
    Rejected(String),
    Internal(String),
}

impl Failure {
    fn from_error(e: Error) -> Failure {
        match e {
            Error::NotLeader { leader } => Failure::NotLeader(leader),
            Error::Rejected(r) => Failure::Rejected(r),
            Error::Unavailable(r) => Failure::Unavailable(r),
            other => Failure::Internal(other.to_string()),
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f {
            Failure::NotLeader(leader) => Error::NotLeader { leader },
            Failure::Unavailable(r) => Error::Unavailable(r),
            Failure::Rejected(r) => Error::Rejected(r),
            Failure::Internal(r) => Error::Internal(r),
        }
    }
}

/// A request's answer and its version (for a batch: the version of all its writes).
type Answer = std::result::Result<(Response, u64), Failure>;

struct Pending {
    request: Request,
    bytes: usize,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    pending: std::collections::VecDeque<Pending>,
    drivers: usize,
    /// Entries written (committed and applied here), and the requests they carried.
    entries: u64,
    requests: u64,
}

/// The write queue of one group.
pub(crate) struct WriteGatherer {
    group: u64,
    limits: GatherLimits,
    queue: Arc<Mutex<Queue>>,
    drivers: TaskTracker,
}

/// Key and value bytes a command carries: what bounds an entry's size.
fn size(command: &Command) -> usize {
    match command {
        Command::Put { key, value, .. } | Command::Cas { key, value, .. } => {
            key.len() + value.len()
        }
        Command::Delete { key } => key.len(),
        Command::Batch(cmds) => cmds.iter().map(size).sum(),
        Command::Gathered(requests) => requests.iter().map(|r| size(&r.command)).sum(),
    }
}

impl WriteGatherer {
    /// Entries are proposed by tasks of `drivers`.
    pub fn new(group: u64, limits: GatherLimits, drivers: TaskTracker) -> WriteGatherer {
        WriteGatherer {
            group,
            limits: GatherLimits {
                max_requests: limits.max_requests.clamp(1, MAX_GATHERED),
                max_in_flight: limits.max_in_flight.max(1),
                ..limits
            },
            queue: Arc::default(),
            drivers,
        }
    }

    /// (entries written, requests they carried) since the group started here.
    pub fn proposed(&self) -> (u64, u64) {
        let q = self.queue.lock().unwrap();
        (q.entries, q.requests)
    }

    /// Proposes `request` (in an entry shared with whatever else is queued) and waits until
    /// it is committed and applied here. Returns its answer and its version.
    pub async fn write(&self, raft: &Group, request: Request) -> Result<(Response, u64)> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap();
            if q.pending.len() >= MAX_QUEUED {
                return Err(Error::Unavailable(format!(
                    "group {}: {MAX_QUEUED} writes are already waiting for the next entry; retry",
                    self.group
                )));
            }
            q.pending.push_back(Pending {
                bytes: size(&request.command),
                request,
                answer: tx,
            });
            let start = q.drivers < self.limits.max_in_flight;
            if start {
                q.drivers += 1;
            }
            start
        };
        if start {
            self.drivers.spawn(drive(
                self.queue.clone(),
                self.group,
                self.limits,
                raft.clone(),
            ));
        }
        match rx.await {
            Ok(answer) => answer.map_err(Error::from),
            Err(_) => Err(Error::Unavailable(
                "the write was dropped before it was proposed (the group is stopping)".into(),
            )),
        }
    }
}

/// The head of the queue that fits one entry: at least one request, then while both limits
/// hold. Requests whose caller has gone (its RPC cancelled or timed out) are dropped, not
/// proposed: it was told nothing, and a write landing long after its client gave up (and
/// perhaps wrote again) would only surprise it.
fn take(queue: &mut Queue, limits: GatherLimits) -> Vec<Pending> {
    let mut bytes = 0;
    let mut taken = Vec::new();
    while let Some(p) = queue.pending.front() {
        if taken.len() == limits.max_requests
            || (!taken.is_empty() && bytes + p.bytes > limits.max_bytes)
        {
            break;
        }
        let p = queue.pending.pop_front().expect("looked at it");
        if p.answer.is_closed() {
            continue;
        }
        bytes += p.bytes;
        taken.push(p);
    }
    taken
}

/// Gives a driver's slot back if its task ends abnormally (a panic, the runtime shutting
/// down), so that the next write starts a new driver instead of waiting for one that is gone.
/// A driver that finds the queue empty gives its slot back itself, under the lock it checked
/// the queue with: were the two apart, a write pushed in between would see the slot still
/// taken, start no driver, and wait for ever.
struct DriverSlot {
    queue: Arc<Mutex<Queue>>,
    held: bool,
}

impl Drop for DriverSlot {
    fn drop(&mut self) {
        if self.held {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.drivers -= 1;
        }
    }
}

/// Proposes what the queue holds, one entry at a time, until it is empty.
async fn drive(queue: Arc<Mutex<Queue>>, group: u64, limits: GatherLimits, raft: Group) {
    let mut slot = DriverSlot {
        queue: queue.clone(),
        held: true,
    };
    loop {
        let batch = {
            let mut q = queue.lock().unwrap();
            let batch = take(&mut q, limits);
            if batch.is_empty() {
                q.drivers -= 1;
                slot.held = false;
                return;
            }
            batch
        };
        let (requests, answers): (Vec<Request>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().map(|p| (p.request, p.answer)).unzip();
        let n = requests.len();
        if let Err(e) = raft.renew_lease().await {
            let failure = Failure::from_error(e.into());
            for answer in answers {
                let _ = answer.send(Err(failure.clone()));
            }
            continue;
        }
        let entry = Request {
            id: None,
            command: Command::Gathered(requests),
        };
        match raft.write(entry).await {
            Ok((index, response)) => {
                {
                    let mut q = queue.lock().unwrap();
                    q.entries += 1;
                    q.requests += n as u64;
                }
                match response {
                    Response::Gathered(responses) if responses.len() == n => {
                        for (position, (response, answer)) in
                            responses.into_iter().zip(answers).enumerate()
                        {
                            let _ = answer.send(Ok((response, version(index, position))));
                        }
                    }
                    other => {
                        let failure = Failure::Internal(format!(
                            "group {group}: a gathered entry of {n} requests at index {index} \
                             was answered with {other:?}"
                        ));
                        for answer in answers {
                            let _ = answer.send(Err(failure.clone()));
                        }
                    }
                }
            }
            Err(e) => {
                let failure = Failure::from_error(e.into());
                for answer in answers {
                    let _ = answer.send(Err(failure.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn pending(key_len: usize) -> (Pending, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        let request = Request::new(Command::Delete {
            key: Bytes::from(vec![b'k'; key_len]),
        });
        (
            Pending {
                bytes: size(&request.command),
                request,
                answer: tx,
            },
            rx,
        )
    }

    #[test]
    fn an_entry_takes_the_head_of_the_queue_within_both_limits() {
        let limits = GatherLimits {
            max_requests: 3,
            max_bytes: 100,
            max_in_flight: 1,
        };
        let mut q = Queue::default();
        let mut receivers = Vec::new();
        for len in [10, 10, 10, 10, 60, 60, 200, 1] {
            let (p, rx) = pending(len);
            q.pending.push_back(p);
            receivers.push(rx);
        }
        let sizes = |v: Vec<Pending>| v.iter().map(|p| p.bytes).collect::<Vec<_>>();
        assert_eq!(sizes(take(&mut q, limits)), [10, 10, 10], "count bound");
        assert_eq!(sizes(take(&mut q, limits)), [10, 60], "byte bound");
        assert_eq!(
            sizes(take(&mut q, limits)),
            [60],
            "the next would pass the bytes"
        );
        assert_eq!(
            sizes(take(&mut q, limits)),
            [200],
            "an oversized request goes alone"
        );
        assert_eq!(sizes(take(&mut q, limits)), [1]);
        assert!(take(&mut q, limits).is_empty());

        // A request whose caller gave up is dropped, not proposed.
        let (gone, rx) = pending(5);
        drop(rx);
        q.pending.push_back(gone);
        let (kept, _rx) = pending(7);
        q.pending.push_back(kept);
        assert_eq!(sizes(take(&mut q, limits)), [7]);
        assert!(q.pending.is_empty());
    }
}
