//! A Jepsen-style history: every operation many concurrent clients made, with when it was
//! invoked, when it completed and what it returned, for the linearizability checker
//! (`checker.rs`).
//!
//! An operation is recorded *before* it is sent ([`History::invoke`]) and completed after its
//! answer ([`History::complete`]), so an operation whose task never finishes (aborted, or still
//! in flight at the end) is in the history all the same, as one whose outcome is unknown.
//!
//! Outcomes are classified conservatively: an error means "failed for sure" only when the
//! request cannot have been applied ([`classify`]); anything else — a timeout, an unavailable
//! cluster, a refused retry — is [`Outcome::Unknown`]: it may or may not have taken effect,
//! and its completion time is infinity.
//!
//! Writes carry unique values ([`unique_value`]), so a read names the one write it observed.

use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use islab_client::{Client, Error};
use serde::{Deserialize, Serialize};

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Put {
        value: String,
    },
    /// A linearizable read.
    Get,
    Delete,
    /// Write `value` only if the key's version is `expected` (`None`: only if absent).
    Cas {
        expected: Option<u64>,
        value: String,
    },
}

impl OpKind {
    /// The value this operation writes, if it writes one.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            OpKind::Put { value } | OpKind::Cas { value, .. } => Some(value),
            OpKind::Get | OpKind::Delete => None,
        }
    }
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// The new version (the write's log index).
    Put { version: u64 },
    /// The value and its version, or `None` if the key did not exist.
    Get { found: Option<(String, u64)> },
    /// Whether the key existed.
    Delete { existed: bool },
    /// Whether the swap happened, and the key's version afterwards (the new version on
    /// success, the one that did not match on failure; `None`: the key does not exist).
    Cas {
        succeeded: bool,
        current: Option<u64>,
    },
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Invoked, not completed (yet).
    Pending,
    /// Completed with this result.
    Ok(OpResult),
    /// Definitely not applied (the request itself was refused before it could be).
    Failed(String),
    /// May or may not have been applied.
    Unknown(String),
}

/// One operation of one client on one key. Times are nanoseconds since the history began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Its index in the history.
    pub id: usize,
    /// The client (process) that made it; one client makes one operation at a time.
    pub client: usize,
    pub key: String,
    pub kind: OpKind,
    /// When it was invoked (before the request was sent).
    pub invoke_ns: u64,
    /// When it completed (after the answer arrived); `None`: never, as far as the checker
    /// knows (pending or unknown outcome: +infinity).
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        let kind = match &self.kind {
            OpKind::Put { value } => format!("put {value}"),
            OpKind::Get => "get".to_string(),
            OpKind::Delete => "delete".to_string(),
            OpKind::Cas { expected, value } => format!("cas {expected:?} -> {value}"),
        };
        let outcome = match &self.outcome {
            Outcome::Pending => "pending".to_string(),
            Outcome::Ok(OpResult::Put { version }) => format!("ok v{version}"),
            Outcome::Ok(OpResult::Get { found: None }) => "ok absent".to_string(),
            Outcome::Ok(OpResult::Get {
                found: Some((value, version)),
            }) => format!("ok {value}@v{version}"),
            Outcome::Ok(OpResult::Delete { existed }) => format!("ok existed={existed}"),
            Outcome::Ok(OpResult::Cas { succeeded, current }) => {
                format!("ok succeeded={succeeded} current={current:?}")
            }
            Outcome::Failed(why) => format!("failed ({why})"),
            Outcome::Unknown(why) => format!("unknown ({why})"),
        };
        let end = match self.complete_ns {
            Some(ns) => format!("{:.3}ms", ms(ns)),
            None => "inf".to_string(),
        };
        write!(
            f,
            "#{} c{} {} {kind} => {outcome} [{:.3}ms, {end}]",
            self.id,
            self.client,
            self.key,
            ms(self.invoke_ns)
        )
    }
}

/// The unique value of write `n` of client `client`.
pub fn unique_value(client: usize, n: u64) -> String {
    format!("c{client}-{n}")
}

/// Whether an error proves the request was not applied. Conservative: only a request refused
/// for what it is (a bad argument, over a limit) — the same request was refused on every
/// attempt, so none can have been applied. A `Rejected` write may be a retry refused because
/// its first attempt's fate is no longer known, so it is unknown, like every other error.
pub fn classify(err: &Error) -> Outcome {
    match err {
        Error::InvalidArgument(_) | Error::TooLarge(_) => Outcome::Failed(err.to_string()),
        _ => Outcome::Unknown(err.to_string()),
    }
}

/// Runs `kind` on `key` with `client` (reads are linearizable).
pub async fn execute(client: &Client, key: &str, kind: &OpKind) -> Result<OpResult, Error> {
    let key = key.to_string();
    Ok(match kind {
        OpKind::Put { value } => OpResult::Put {
            version: client.put(key, value.clone()).await?,
        },
        OpKind::Get => OpResult::Get {
            found: client
                .get(key)
                .await?
                .map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.version)),
        },
        OpKind::Delete => OpResult::Delete {
            existed: client.delete(key).await?,
        },
        OpKind::Cas { expected, value } => {
            let outcome = client.cas(key, *expected, value.clone()).await?;
            OpResult::Cas {
                succeeded: outcome.succeeded,
                current: outcome.current_version,
            }
        }
    })
}

/// A history shared by concurrent client tasks (behind an `Arc`).
pub struct History {
    start: Instant,
    seed: u64,
    ops: Mutex<Vec<Op>>,
    ok: AtomicUsize,
}

/// What [`History::save`] writes.
#[derive(Serialize, Deserialize)]
struct Saved {
    seed: u64,
    ops: Vec<Op>,
}

impl History {
    /// An empty history; `seed` is the run's random seed, kept with the history.
    pub fn new(seed: u64) -> History {
        History {
            start: Instant::now(),
            seed,
            ops: Mutex::new(Vec::new()),
            ok: AtomicUsize::new(0),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records the invocation of an operation; returns its id, for [`History::complete`].
    pub fn invoke(&self, client: usize, key: &str, kind: OpKind) -> usize {
        let mut ops = self.ops.lock().unwrap();
        let id = ops.len();
        // Taken under the lock: ids are in invocation order.
        let invoke_ns = self.now_ns();
        ops.push(Op {
            id,
            client,
            key: key.to_string(),
            kind,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Pending,
        });
        id
    }

    /// Records how operation `id` ended. An unknown outcome never completes.
    pub fn complete(&self, id: usize, outcome: Outcome) {
        let now = self.now_ns();
        let mut ops = self.ops.lock().unwrap();
        let op = &mut ops[id];
        assert_eq!(op.outcome, Outcome::Pending, "op {id} completed twice");
        op.complete_ns = match outcome {
            Outcome::Ok(_) | Outcome::Failed(_) => Some(now),
            Outcome::Pending | Outcome::Unknown(_) => None,
        };
        if matches!(outcome, Outcome::Ok(_)) {
            self.ok.fetch_add(1, Ordering::Relaxed);
        }
        op.outcome = outcome;
    }

    /// Invokes, awaits `call` and completes one operation; returns its outcome.
    pub async fn record<F>(&self, client: usize, key: &str, kind: OpKind, call: F) -> Outcome
    where
        F: Future<Output = Result<OpResult, Error>>,
    {
        let id = self.invoke(client, key, kind);
        let outcome = match call.await {
            Ok(result) => Outcome::Ok(result),
            Err(e) => classify(&e),
        };
        self.complete(id, outcome.clone());
        outcome
    }

    /// [`History::record`] of [`execute`]: runs `kind` on `key` with `client`.
    pub async fn run(&self, index: usize, client: &Client, key: &str, kind: OpKind) -> Outcome {
        let call = execute(client, key, &kind);
        // `execute` borrows `kind`; record a copy.
        self.record(index, key, kind.clone(), call).await
    }

    /// How many operations completed with a result so far.
    pub fn ok_count(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// A copy of every operation so far; those still pending count as unknown.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap().clone();
        for op in &mut ops {
            if op.outcome == Outcome::Pending {
                op.outcome = Outcome::Unknown("never completed".into());
            }
        }
        ops
    }

    /// Writes the seed and every operation to `path` as JSON (see [`History::load`]).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        save(self.seed, &self.ops(), path)
    }

    /// The seed and operations [`History::save`] wrote.
    pub fn load(path: &Path) -> std::io::Result<(u64, Vec<Op>)> {
        let file = std::fs::File::open(path)?;
        let saved: Saved = serde_json::from_reader(std::io::BufReader::new(file))?;
        Ok((saved.seed, saved.ops))
    }
}

/// Writes a seed and operations as JSON (what [`History::save`] does with its own).
pub fn save(seed: u64, ops: &[Op], path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer(
        &mut w,
        &Saved {
            seed,
            ops: ops.to_vec(),
        },
    )?;
    std::io::Write::flush(&mut w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_save_and_load() {
        let h = History::new(42);
        let a = h.invoke(
            0,
            "k",
            OpKind::Put {
                value: unique_value(0, 1),
            },
        );
        let b = h.invoke(1, "k", OpKind::Get);
        let c = h.invoke(2, "k", OpKind::Delete);
        h.complete(a, Outcome::Ok(OpResult::Put { version: 7 }));
        h.complete(b, Outcome::Unknown("timeout".into()));
        assert_eq!(h.ok_count(), 1);
        let ops = h.ops();
        assert_eq!(ops.len(), 3);
        assert!(ops[0].complete_ns.is_some() && ops[0].complete_ns >= Some(ops[0].invoke_ns));
        assert_eq!(ops[1].complete_ns, None);
        assert_eq!(ops[c].outcome, Outcome::Unknown("never completed".into()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        h.save(&path).unwrap();
        let (seed, loaded) = History::load(&path).unwrap();
        assert_eq!(seed, 42);
        assert_eq!(loaded, ops);
    }

    #[test]
    fn only_refusals_of_the_request_itself_are_failures() {
        assert!(matches!(
            classify(&Error::InvalidArgument("empty key".into())),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify(&Error::Rejected("seq too old".into())),
            Outcome::Unknown(_)
        ));
        assert!(matches!(
            classify(&Error::Timeout {
                after: std::time::Duration::from_secs(1),
                attempts: 3,
                last: "unavailable".into()
            }),
            Outcome::Unknown(_)
        ));
    }
}
