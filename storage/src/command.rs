//! The commands a shard's state machine applies, and what each returns.
//!
//! Commands are data: the Raft layer puts them in log entries (encoded by [`crate::codec`]) and
//! every replica applies the same ones in the same order to its [`crate::MemStore`]. Apply is
//! deterministic: nothing in it reads a clock or a random number; an expiry is an absolute time
//! chosen by the leader when it proposes the write.

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
    /// Apply all of these atomically, in order, at one log index. A nested batch is rejected.
    Batch(Vec<Command>),
}

/// The outcome of applying a [`Command`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// For log entries that carry no command (blank, membership).
    #[default]
    None,
    /// The key's new version (the entry's log index).
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
        }
    }
}
