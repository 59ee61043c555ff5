//! Linearizable reads in rounds: one read-index confirmation serves every read that arrived
//! before it started.
//!
//! ```text
//! read ──► join the waiting list ──► (no round running?) start the driver
//! driver: loop { take every waiting read; one ensure_linearizable(ReadIndex); answer them all }
//! ```
//!
//! A read that arrives while a round is in flight waits for the next round: the confirmation
//! it gets was requested after it arrived, which is what makes it linearizable. Under load
//! this turns thousands of reads per second into one quorum round trip per round, instead of
//! one openraft read request (and heartbeat broadcast) each.

use std::sync::{Arc, Mutex};

use islab_raft::Group;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};

/// Why a round failed, in a form every waiter of the round can get a copy of.
#[derive(Clone, Debug)]
enum RoundError {
    NotLeader(Option<String>),
    Unavailable(String),
}

impl From<RoundError> for Error {
    fn from(e: RoundError) -> Error {
        match e {
            RoundError::NotLeader(leader) => Error::NotLeader { leader },
            RoundError::Unavailable(msg) => Error::Unavailable(msg),
        }
    }
}

type Waiter = oneshot::Sender<Result<(), RoundError>>;

#[derive(Default)]
struct Rounds {
    running: bool,
    waiting: Vec<Waiter>,
    /// Rounds run so far.
    count: u64,
}

/// The read rounds of one group.
pub(crate) struct ReadBatcher {
    rounds: Arc<Mutex<Rounds>>,
    drivers: TaskTracker,
}

impl ReadBatcher {
    /// Rounds are driven by tasks of `drivers`.
    pub fn new(drivers: TaskTracker) -> ReadBatcher {
        ReadBatcher {
            rounds: Arc::default(),
            drivers,
        }
    }

    /// Read-index rounds run since the group started here.
    pub fn rounds(&self) -> u64 {
        self.rounds.lock().unwrap().count
    }

    /// Waits until a read that arrived now may be served from this replica's memory.
    pub async fn wait(&self, raft: &Group) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut r = self.rounds.lock().unwrap();
            r.waiting.push(tx);
            !std::mem::replace(&mut r.running, true)
        };
        if start {
            // A task drives rounds until nobody waits (a reader driving them itself would wait
            // as long as the load lasts).
            self.drivers.spawn(drive(self.rounds.clone(), raft.clone()));
        }
        match rx.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::Unavailable("the read round was dropped".into())),
        }
    }
}

async fn drive(rounds: Arc<Mutex<Rounds>>, raft: Group) {
    loop {
        let batch = {
            let mut r = rounds.lock().unwrap();
            if r.waiting.is_empty() {
                r.running = false;
                return;
            }
            r.count += 1;
            std::mem::take(&mut r.waiting)
        };
        let result = round(&raft).await;
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}

async fn round(raft: &Group) -> Result<(), RoundError> {
    match raft.read_index().await {
        Ok(()) => Ok(()),
        Err(islab_raft::Error::NotLeader { leader, .. }) => Err(RoundError::NotLeader(leader)),
        Err(e) => Err(RoundError::Unavailable(e.to_string())),
    }
}
