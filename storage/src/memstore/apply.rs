//! Applying commands to a [`MemStore`]: gathered entries, write ids, batches, one write.
//!
//! Every replica applies the same entries in the same order and gets the same store and the
//! same answers: nothing here reads a clock or a random number. The answer to each write id is
//! kept in the store itself (under [`RESERVED_PREFIX`]), so sessions travel in checkpoints.
//! Each write that replaces or deletes a value first gives a running checkpoint scan the
//! chance to save it (see `memstore/checkpoint_scan.rs`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use dashmap::mapref::entry::Entry;

use crate::memstore::checkpoint_scan::Capture;
use crate::memstore::command::{
    Command, MAX_GATHERED, RESERVED_PREFIX, Request, Response, version,
};
use crate::memstore::{MAX_EXPIRES_AT, MemStore, SESSION_WINDOW, Versioned, size_of};

impl MemStore {
    /// Applies log entry `index`, whose payload is `request`: each request of a gathered entry
    /// at its own version, a plain (pre-gathering) request at version `index`.
    pub fn apply_entry(&self, index: u64, request: &Request) -> Response {
        match (&request.command, request.id) {
            (Command::Gathered(requests), None) => Response::Gathered(
                requests
                    .iter()
                    .enumerate()
                    .map(|(position, r)| {
                        if position >= MAX_GATHERED {
                            return Response::Rejected {
                                reason: format!(
                                    "a gathered entry holds at most {MAX_GATHERED} requests"
                                ),
                            };
                        }
                        self.apply_request(version(index, position), r)
                    })
                    .collect(),
            ),
            (Command::Gathered(_), Some(_)) => Response::Rejected {
                reason: "a gathered entry carries no write id of its own".into(),
            },
            _ => self.apply_request(index, request),
        }
    }

    /// Applies `request` at `version`, at most once per [`crate::WriteId`].
    ///
    /// The answer to each `(client, seq)` is kept in the store itself (under
    /// [`RESERVED_PREFIX`]), so sessions travel in checkpoints and every replica answers a retry
    /// the same way. One client's writes may arrive in any order (it pipelines them), so each
    /// seq is remembered on its own, for the last [`SESSION_WINDOW`] seqs of that client: a
    /// write older than that window cannot be told apart from one already applied and is
    /// refused rather than risk applying it twice.
    pub fn apply_request(&self, index: u64, request: &Request) -> Response {
        if let Command::Gathered(_) = request.command {
            return Response::Rejected {
                reason: "gathered requests cannot nest".into(),
            };
        }
        let Some(id) = request.id else {
            return self.apply(index, &request.command);
        };
        let seen = session_key(id.client, Some(id.seq));
        if let Some(v) = self.map.get(&seen[..])
            && let Ok(response) = crate::codec::decode::<Response>(&v.value)
        {
            return response; // a retry: the first answer, applied once
        }
        let high_key = session_key(id.client, None);
        let high = self
            .map
            .get(&high_key[..])
            .and_then(|v| v.value.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        if high >= SESSION_WINDOW && id.seq <= high - SESSION_WINDOW {
            return Response::Rejected {
                reason: format!(
                    "write {} of client {:x} is older than the last {SESSION_WINDOW} writes of that client (latest {high}): whether an earlier attempt of it was applied is no longer known, so it is not applied again",
                    id.seq, id.client
                ),
            };
        }
        let response = self.apply(index, &request.command);
        let capture = self.current_capture();
        let capture = capture.as_deref();
        let record = |key: Bytes, value: Vec<u8>| {
            let v = Versioned {
                value: Bytes::from(value),
                version: index,
                expires_at: None,
            };
            let _ = self.write(&key, Some(v), None, capture);
        };
        if let Ok(encoded) = crate::codec::encode(&response) {
            record(seen, encoded);
        }
        if id.seq > high {
            record(high_key, id.seq.to_be_bytes().to_vec());
        }
        if id.seq >= SESSION_WINDOW {
            let old = session_key(id.client, Some(id.seq - SESSION_WINDOW));
            let _ = self.write(&old, None, None, capture);
        }
        response
    }

    /// Applies `cmd` at version `index` (a log index, or a gathered request's version).
    pub fn apply(&self, index: u64, cmd: &Command) -> Response {
        let capture = self.current_capture();
        let capture = capture.as_deref();
        match cmd {
            Command::Batch(cmds) => {
                if let Err(reason) = self.check_batch(index, cmds) {
                    return Response::Rejected { reason };
                }
                Response::Batch(
                    cmds.iter()
                        .map(|c| self.apply_one(index, c, capture))
                        .collect(),
                )
            }
            cmd => self.apply_one(index, cmd, capture),
        }
    }

    /// A batch is all or nothing: no nesting, and every compare-and-swap in it must hold
    /// (evaluated in order, seeing the batch's earlier writes, whose version is the batch's
    /// log `index`) or nothing is applied.
    fn check_batch(&self, index: u64, cmds: &[Command]) -> Result<(), String> {
        let mut overlay: HashMap<&[u8], Option<u64>> = HashMap::new();
        for (i, cmd) in cmds.iter().enumerate() {
            match cmd {
                Command::Batch(_) => return Err(format!("op {i}: a batch cannot nest a batch")),
                Command::Gathered(_) => {
                    return Err(format!("op {i}: a batch cannot nest gathered requests"));
                }
                Command::Put { key, .. } => {
                    overlay.insert(key, Some(index));
                }
                Command::Delete { key } => {
                    overlay.insert(key, None);
                }
                Command::Cas { key, expected, .. } => {
                    let current = match overlay.get(&key[..]) {
                        Some(v) => *v,
                        None => self.map.get(&key[..]).map(|v| v.version),
                    };
                    if current != *expected {
                        return Err(format!(
                            "op {i}: compare-and-swap failed: expected version {expected:?}, found {current:?}"
                        ));
                    }
                    overlay.insert(key, Some(index));
                }
            }
        }
        Ok(())
    }

    fn apply_one(&self, index: u64, cmd: &Command, capture: Option<&Capture>) -> Response {
        match cmd {
            Command::Put {
                key,
                value,
                expires_at,
            } => {
                let value = Versioned {
                    value: value.clone(),
                    version: index,
                    expires_at: expires_at.map(|e| e.min(MAX_EXPIRES_AT)),
                };
                let _ = self.write(key, Some(value), None, capture);
                Response::Put { version: index }
            }
            Command::Delete { key } => {
                let (existed, _) = self.write(key, None, None, capture);
                Response::Delete { existed }
            }
            Command::Cas {
                key,
                expected,
                value,
                expires_at,
            } => {
                let value = Versioned {
                    value: value.clone(),
                    version: index,
                    expires_at: expires_at.map(|e| e.min(MAX_EXPIRES_AT)),
                };
                let (_, swapped) = self.write(key, Some(value), Some(*expected), capture);
                match swapped {
                    Ok(()) => Response::Cas {
                        succeeded: true,
                        current: Some(index),
                    },
                    Err(current) => Response::Cas {
                        succeeded: false,
                        current,
                    },
                }
            }
            Command::Batch(_) => Response::Rejected {
                reason: "a batch cannot nest a batch".into(),
            },
            Command::Gathered(_) => Response::Rejected {
                reason: "gathered requests cannot nest".into(),
            },
        }
    }

    /// Sets (`Some`) or removes (`None`) `key`, if its version is `expect` (when given).
    /// Returns whether the key existed, and `Err(current version)` if the expectation failed.
    fn write(
        &self,
        key: &Bytes,
        new: Option<Versioned>,
        expect: Option<Option<u64>>,
        capture: Option<&Capture>,
    ) -> (bool, Result<(), Option<u64>>) {
        let entry = self.map.entry(key.clone()); // holds the shard's write lock
        let old = match &entry {
            Entry::Occupied(o) => Some(o.get()),
            Entry::Vacant(_) => None,
        };
        let existed = old.is_some();
        if let Some(expect) = expect {
            let current = old.map(|v| v.version);
            if current != expect {
                return (existed, Err(current));
            }
        }
        if let (Some(capture), Some(old)) = (capture, old)
            && old.version <= capture.at
        {
            let shard = self.map.determine_map(&key[..]);
            if !capture.done[shard].load(Ordering::Acquire) {
                capture.pre_images[shard]
                    .lock()
                    .unwrap()
                    .push((key.clone(), old.clone()));
            }
        }
        if let Some(v) = &new {
            self.last_version.fetch_max(v.version, Ordering::Relaxed);
        }
        let (bytes, keys) = match (entry, new) {
            (Entry::Occupied(mut o), Some(v)) => {
                let d = size_of(key, &v) - size_of(key, o.get());
                o.insert(v);
                (d, 0)
            }
            (Entry::Occupied(o), None) => {
                let (k, v) = o.remove_entry();
                (-size_of(&k, &v), -1)
            }
            (Entry::Vacant(e), Some(v)) => {
                let d = size_of(key, &v);
                e.insert(v);
                (d, 1)
            }
            (Entry::Vacant(_), None) => (0, 0),
        };
        self.account(key, bytes, keys);
        (existed, Ok(()))
    }
}

/// `<reserved>session/<client>/<seq>` holds the answer to one write; without a seq, the
/// client's highest seq seen.
fn session_key(client: u64, seq: Option<u64>) -> Bytes {
    let mut key = Vec::with_capacity(RESERVED_PREFIX.len() + 26);
    key.extend_from_slice(RESERVED_PREFIX);
    key.extend_from_slice(b"session/");
    key.extend_from_slice(&client.to_be_bytes());
    match seq {
        Some(seq) => {
            key.push(b'/');
            key.extend_from_slice(&seq.to_be_bytes());
        }
        None => key.extend_from_slice(b"/high"),
    }
    Bytes::from(key)
}
