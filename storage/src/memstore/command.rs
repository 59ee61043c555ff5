//! The commands a shard's state machine applies, and what each returns.
//!
//! Commands are data: the Raft layer puts them in log entries (encoded by [`crate::codec`]) and
//! every replica applies the same ones in the same order to its [`crate::MemStore`]. Apply is
//! deterministic: nothing in it reads a clock or a random number; an expiry is an absolute time
//! chosen by the leader when it proposes the write.
//!
//! # Versions
//!
//! A shard leader gathers the writes that arrive while its previous proposal is in flight into
//! one log entry ([`Command::Gathered`]), so one entry may carry many requests, each with its
//! own write id, its own compare-and-swap outcome and its own answer. A version names the
//! request, not only the entry: the request at position `p` of the gathered entry at log index
//! `i` writes version `i × 4096 + p` ([`version`]), in the spirit of etcd's (main, sub)
//! revision pairs packed into one `u64`. Versions are strictly increasing per key and per
//! shard, in apply order, and every replica computes the same ones from the entry alone.
//!
//! An entry that is a plain request (not gathered) was written by a build from before
//! gathering; its version is its log index, as it was then. Such entries only ever precede
//! gathered ones in a log and `i < i' × 4096`, so versions still never go backwards.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Keys starting with this are the store's own (client sessions); clients may not use them.
pub const RESERVED_PREFIX: &[u8] = b"\xffislab/";

/// Identifies one write of one client, so a retried write is applied once: `client` is random
/// per client, `seq` grows by one per write of that client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteId {
    pub client: u64,
    pub seq: u64,
}

/// What a log entry carries: a command, and the id that makes its retries idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: Option<WriteId>,
    pub command: Command,
}

impl Request {
    /// A request with no deduplication.
    pub fn new(command: Command) -> Request {
        Request { id: None, command }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(
                f,
                "{} [client {:x} seq {}]",
                self.command, id.client, id.seq
            ),
            None => write!(f, "{}", self.command),
        }
    }
}

/// One state-machine command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set `key` to `value`. `expires_at` is a Unix time in milliseconds.
    Put {
        key: Bytes,
        value: Bytes,
        expires_at: Option<u64>,
    },
    /// Remove `key`.
    Delete { key: Bytes },
    /// Set `key` to `value` only if its current version is `expected` (`None`: only if absent).
    Cas {
        key: Bytes,
        expected: Option<u64>,
        value: Bytes,
        expires_at: Option<u64>,
    },
    /// Apply all of these atomically, in order, at one version. A nested batch is rejected.
    Batch(Vec<Command>),
    /// Independent requests gathered by the leader into one log entry: applied in order, each
    /// on its own (its own write id, outcome and version, see [`version`]); one request failing
    /// does not touch the others. Only valid as the command of an entry's top-level request
    /// (which then has no write id of its own); nested anywhere else it is rejected.
    Gathered(Vec<Request>),
}

/// Low bits of a version: the position of a request in its gathered entry.
pub const POSITION_BITS: u32 = 12;

/// The most requests one gathered entry may carry.
pub const MAX_GATHERED: usize = 1 << POSITION_BITS;

/// The version written by the request at `position` of the gathered entry at log `index`.
///
/// Log indexes stay far below 2^52 (a shard applying a million entries per second for a
/// hundred years), so the shift loses nothing.
pub const fn version(index: u64, position: usize) -> u64 {
    (index << POSITION_BITS) | (position as u64 & (MAX_GATHERED as u64 - 1))
}

/// The outcome of applying a [`Command`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// For log entries that carry no command (blank, membership).
    #[default]
    None,
    /// The key's new version (see [`version`]).
    Put { version: u64 },
    /// Whether the key existed.
    Delete { existed: bool },
    /// Whether the swap happened, and the key's version afterwards.
    Cas {
        succeeded: bool,
        current: Option<u64>,
    },
    /// One response per command of the batch.
    Batch(Vec<Response>),
    /// The command was refused as a whole; nothing changed.
    Rejected { reason: String },
    /// One response per request of a [`Command::Gathered`] entry, in order.
    Gathered(Vec<Response>),
}

/// Short and value-free: commands end up in Raft's logs, and values can be large.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = |k: &Bytes| String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned();
        match self {
            Command::Put { key: k, value, .. } => {
                write!(f, "put {} ({} bytes)", key(k), value.len())
            }
            Command::Delete { key: k } => write!(f, "delete {}", key(k)),
            Command::Cas {
                key: k, expected, ..
            } => write!(f, "cas {} if version {expected:?}", key(k)),
            Command::Batch(cmds) => write!(f, "batch of {}", cmds.len()),
            Command::Gathered(requests) => write!(f, "{} gathered requests", requests.len()),
        }
    }
}
