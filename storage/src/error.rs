//! The one error type of `islab-storage`.
//!
//! Variants are named for what happened, and the ones that come from disk name the file and the
//! offset, so an operator reading a refusal to start knows exactly where to look.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed; `context` says which one and on what.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// The disk is full. Nothing in the failed batch was acknowledged.
    #[error("no space left on device while {context}")]
    NoSpace { context: String },

    /// A record or block failed its checksum or could not be decoded.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    /// The WAL writer stopped after a failed write or fsync. Nothing submitted after the failure
    /// is acknowledged and the failed write is never retried as if it had worked; the process
    /// must restart and recover from what is on disk.
    #[error("the WAL is stopped after an earlier failure: {reason}")]
    WalFailed { reason: String },

    /// The WAL was shut down.
    #[error("the WAL is shut down")]
    Shutdown,

    /// Another process holds the data directory.
    #[error("data directory {dir} is locked by another process (is another islab running on it?)")]
    Locked { dir: PathBuf },

    /// An append that would leave a hole in, or rewrite the past of, a group's log.
    #[error("group {group}: append of index {got} does not follow the last index {last:?}")]
    NotContiguous {
        group: u64,
        got: u64,
        last: Option<u64>,
    },

    /// A file whose format version this build does not understand.
    #[error("{file}: unsupported format version {version} (this build reads {supported})")]
    UnsupportedVersion {
        file: PathBuf,
        version: u32,
        supported: u32,
    },

    /// A checkpoint was asked for while another is still being built on the same store.
    #[error("a checkpoint of this store is already in progress")]
    CheckpointInProgress,

    /// An entry payload could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),

    /// The catalog (sled) failed.
    #[error("catalog: {0}")]
    Catalog(String),

    /// A configuration value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an `io::Error`, turning ENOSPC into [`Error::NoSpace`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        let context = context.into();
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            return Error::NoSpace { context };
        }
        Error::Io { context, source }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::NoSpace { .. } => io::ErrorKind::StorageFull,
            Error::Corrupt { .. } | Error::Codec(_) => io::ErrorKind::InvalidData,
            Error::Shutdown => io::ErrorKind::NotConnected,
            Error::Locked { .. } => io::ErrorKind::ResourceBusy,
            Error::NotContiguous { .. } | Error::Config(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
