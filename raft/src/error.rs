//! The one error type of `islab-raft`, and the one place it becomes an `io::Error`.
//!
//! openraft's storage traits speak `std::io::Error` and wrap it into its own `StorageError`
//! with the subject (log, vote, snapshot) attached. So our adapters build an [`Error`] that says
//! what happened on our side — a storage failure, a snapshot that does not match its metadata,
//! a hole in a log read — and cross the boundary through [`io_error`] only.

use std::io;
use std::path::PathBuf;

use islab_storage::GroupId;

/// Everything that can go wrong between openraft and the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed (WAL, memory store, checkpoint or codec).
    #[error(transparent)]
    Storage(#[from] islab_storage::Error),

    /// The WAL dropped a durability callback without running it: the write's fate is unknown,
    /// so it must not be reported as durable.
    #[error("group {group}: the WAL dropped the durability callback of {what} without running it")]
    CallbackDropped { group: GroupId, what: &'static str },

    /// A log read came back with a gap inside the requested range.
    #[error("group {group}: log read expected index {expected} but got {got} (a hole in the log)")]
    LogHole {
        group: GroupId,
        expected: u64,
        got: u64,
    },

    /// A checkpoint offered as a snapshot does not describe what its metadata claims.
    #[error("group {group}: checkpoint {file} cannot be installed: {reason}")]
    SnapshotMismatch {
        group: GroupId,
        file: PathBuf,
        reason: String,
    },

    /// A file operation on the checkpoint directory failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// This node does not lead the group; `leader` is the leader's address when known.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(" (leader: {l})")).unwrap_or_default())]
    NotLeader {
        group: GroupId,
        leader: Option<String>,
    },
    /// Still the leader, but no quorum acknowledged it for a lease (openraft refuses to
    /// append then): retry here shortly, not elsewhere.
    #[error("group {group}: the leader's lease expired and is being renewed; retry")]
    LeaseExpired { group: GroupId },
    /// The group cannot do it now (no quorum, a membership change in progress): retryable.
    #[error("{reason}")]
    Unavailable { group: GroupId, reason: String },
    /// A membership change that is not allowed (it would leave no quorum, names unknown
    /// nodes, ...).
    #[error("{reason}")]
    MembershipRefused { group: GroupId, reason: String },
    /// The group has members already: it was initialised before.
    #[error("group {group} is already initialised: {reason}")]
    AlreadyInitialised { group: GroupId, reason: String },
    /// The group is shut down (stopped here, or stopped for good by a storage failure).
    #[error("group {group} is shut down: {reason}")]
    Stopped { group: GroupId, reason: String },
    /// openraft refused to start the group.
    #[error("openraft failed to start group {group}: {reason}")]
    Start { group: GroupId, reason: String },
    /// The Raft timing settings do not make sense together.
    #[error("raft: {0}")]
    Config(String),
    /// A blocking task (checkpoint write or load) panicked or was cancelled.
    #[error("group {group}: blocking {what} task failed: {reason}")]
    TaskFailed {
        group: GroupId,
        what: &'static str,
        reason: String,
    },
}

impl Error {
    /// Wraps an `io::Error` from a checkpoint-directory operation with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Converts anything that becomes an [`Error`] into the `io::Error` openraft's traits return.
///
/// Storage errors keep the `io::ErrorKind` the storage crate chose for them; ours are
/// classified here.
pub(crate) fn io_error(e: impl Into<Error>) -> io::Error {
    match e.into() {
        Error::Storage(e) => e.into(),
        e => {
            let kind = match &e {
                Error::Io { source, .. } => source.kind(),
                Error::LogHole { .. } | Error::SnapshotMismatch { .. } => {
                    io::ErrorKind::InvalidData
                }
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_the_boundary() {
        let e = io_error(Error::LogHole {
            group: 1,
            expected: 5,
            got: 7,
        });
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("hole"));

        let e = io_error(Error::io(
            "rename x",
            io::Error::from(io::ErrorKind::NotFound),
        ));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("rename x"));

        let e = io_error(islab_storage::Error::Shutdown);
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    }
}
